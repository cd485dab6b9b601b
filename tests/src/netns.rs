//! A network namespace of the test's own, standing in for a Kubernetes pod network: processes
//! started in it bind the fixed ports a manifest gives them without clashing with anything on
//! the machine, reach the test through a veth pair, and resolve names through their own
//! `/etc/hosts` (`ip netns exec` mounts `/etc/netns/<name>/hosts` over it). Root only; made
//! and removed with iproute2.

use std::{
    net::Ipv4Addr,
    path::Path,
    process::Command,
    sync::atomic::{AtomicU8, Ordering},
};

use crate::{Service, hosts::hosts_text};

pub struct NetNs {
    name: String,
    host_veth: String,
    /// The test's end of the veth pair: what the namespace reaches the test at.
    pub host_ip: Ipv4Addr,
    /// The namespace's address: what the test reaches its processes at.
    pub ns_ip: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2): {e}"));
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl NetNs {
    /// A fresh namespace whose `/etc/hosts` maps each `(address, name)` pair.
    pub fn create(hosts: impl Fn(&NetNs) -> Vec<(Ipv4Addr, String)>) -> NetNs {
        static NEXT: AtomicU8 = AtomicU8::new(0);
        let pid = std::process::id();
        let index = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("tk{pid}x{index}");
        // A /30 per namespace in 10.213.0.0/16, from the process id and a counter.
        let key = pid.wrapping_mul(4).wrapping_add(u32::from(index));
        let (third, fourth) = ((key >> 6) as u8, ((key & 63) * 4) as u8);
        let netns = NetNs {
            host_veth: format!("{name}h"),
            name,
            host_ip: Ipv4Addr::new(10, 213, third, fourth + 1),
            ns_ip: Ipv4Addr::new(10, 213, third, fourth + 2),
        };
        let (ns, host_veth) = (&netns.name, &netns.host_veth);
        let ns_veth = format!("{ns}n");
        ip(&["netns", "add", ns]);
        ip(&[
            "link", "add", host_veth, "type", "veth", "peer", "name", &ns_veth,
        ]);
        ip(&["link", "set", &ns_veth, "netns", ns]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", netns.host_ip),
            "dev",
            host_veth,
        ]);
        ip(&["link", "set", host_veth, "up"]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/30", netns.ns_ip),
            "dev",
            &ns_veth,
        ]);
        ip(&["-n", ns, "link", "set", &ns_veth, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        let text = hosts_text(hosts(&netns));
        let dir = Path::new("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).expect("create /etc/netns/<name>");
        std::fs::write(dir.join("hosts"), text).expect("write the namespace's hosts file");
        netns
    }

    /// Starts `program` inside the namespace (see [`Service::start`]). With `service_account`,
    /// that folder is mounted where a pod finds its service account
    /// (`/var/run/secrets/kubernetes.io/serviceaccount`), in a mount namespace of the
    /// process's own.
    pub async fn start(
        &self,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        service_account: Option<&Path>,
    ) -> Service {
        self.run(program, args, env, service_account, true).await
    }

    /// [`NetNs::start`] for a program that announces nothing (not one of ours).
    pub async fn start_foreign(
        &self,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Service {
        self.run(program, args, env, None, false).await
    }

    async fn run(
        &self,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        service_account: Option<&Path>,
        announces: bool,
    ) -> Service {
        let mut wrapped = vec!["netns".to_owned(), "exec".to_owned(), self.name.clone()];
        if let Some(folder) = service_account {
            // No fork: the service keeps the process id, so signals reach it directly.
            let script = "mount -t tmpfs tmpfs /run \
                && mkdir -p /run/secrets/kubernetes.io/serviceaccount \
                && mount --bind \"$1\" /run/secrets/kubernetes.io/serviceaccount \
                && shift && exec \"$@\"";
            let wrapper = [
                "unshare",
                "--mount",
                "--",
                "sh",
                "-c",
                script,
                "with-service-account",
            ];
            wrapped.extend(wrapper.map(str::to_owned));
            wrapped.push(folder.display().to_string());
        }
        wrapped.push(program.display().to_string());
        wrapped.extend(args.iter().cloned());
        let wrapped: Vec<&str> = wrapped.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // `ip netns exec`, `unshare` and `sh` all exec what follows: the process is the
        // service itself.
        if announces {
            Service::start(Path::new("ip"), &wrapped, &env).await
        } else {
            Service::start_foreign(Path::new("ip"), &wrapped, &env).await
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_veth])
            .output();
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.name));
    }
}
