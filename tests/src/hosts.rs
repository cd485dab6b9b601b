//! Names that resolve the way the test says, for one process: the process runs in a private
//! mount namespace (`unshare --mount`, root only) with the test's file bind-mounted over
//! `/etc/hosts`. That is how a Kubernetes Service name (`signaling`, a headless Service with
//! one address per pod) can be given to a service unchanged and still lead to loopback.

use std::{
    fmt::Display,
    path::{Path, PathBuf},
};

use tempfile::NamedTempFile;

/// The text of a hosts file: `localhost`, then one line per `(address, name)`.
pub fn hosts_text<A: Display, N: Display>(entries: impl IntoIterator<Item = (A, N)>) -> String {
    let mut text = String::from("127.0.0.1 localhost\n");
    for (address, name) in entries {
        text.push_str(&format!("{address} {name}\n"));
    }
    text
}

/// A hosts file; rewritten in place, so a process that mounted it sees every change.
pub struct Hosts {
    file: NamedTempFile,
}

impl Hosts {
    /// `entries` are `(address, name)` pairs; a name listed twice resolves to both addresses.
    pub fn new(entries: &[(&str, &str)]) -> Hosts {
        let hosts = Hosts {
            file: NamedTempFile::new().expect("temp hosts file"),
        };
        hosts.rewrite(entries);
        hosts
    }

    pub fn rewrite(&self, entries: &[(&str, &str)]) {
        let text = hosts_text(entries.iter().copied());
        // Truncate and write the same inode: a bind mount follows the inode, not the path.
        std::fs::write(self.file.path(), text).expect("write the hosts file");
    }

    /// The program and arguments that run `program args…` with this hosts file. The wrapper
    /// (`unshare`) takes the child down with it when it is killed.
    pub fn wrap(&self, program: &Path, args: &[&str]) -> (PathBuf, Vec<String>) {
        let mut wrapped: Vec<String> = [
            "--mount",
            "--fork",
            "--kill-child",
            "--",
            "sh",
            "-c",
            r#"mount --bind "$1" /etc/hosts && shift && exec "$@""#,
            "with-hosts",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        wrapped.push(self.file.path().display().to_string());
        wrapped.push(program.display().to_string());
        wrapped.extend(args.iter().map(|s| (*s).to_owned()));
        (PathBuf::from("unshare"), wrapped)
    }
}
