//! The README's test command sets itself up on a fresh Debian: its Python tools go into a
//! virtualenv, because Debian's Python refuses `pip install` outside one (PEP 668). Checked
//! against a throwaway Python that refuses the same way: the interpreter of this machine,
//! copied, its standard library linked in, and an `EXTERNALLY-MANAGED` marker added.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// A Python whose `pip install` outside a virtualenv is refused, in `dir`; its `bin`.
fn externally_managed_python(dir: &Path) -> PathBuf {
    let ask = |code: &str| {
        let out = Command::new("python3")
            .args(["-c", code])
            .output()
            .expect("python3 is installed");
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    };
    let executable = ask("import sys; print(sys.executable)");
    let stdlib = PathBuf::from(ask("import sysconfig; print(sysconfig.get_path('stdlib'))"));
    let version = stdlib.file_name().expect("lib/pythonX.Y").to_owned();
    let (bin, lib) = (dir.join("bin"), dir.join("lib").join(&version));
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::create_dir_all(&lib).expect("lib");
    std::fs::copy(&executable, bin.join("python3")).expect("copy the interpreter");
    for entry in std::fs::read_dir(&stdlib).expect("the standard library") {
        let entry = entry.expect("an entry");
        std::os::unix::fs::symlink(entry.path(), lib.join(entry.file_name())).expect("link");
    }
    std::fs::write(
        lib.join("EXTERNALLY-MANAGED"),
        "[externally-managed]\nError=a throwaway Python that refuses, as Debian's does\n",
    )
    .expect("the marker");
    bin
}

#[test]
fn python_tools_install_into_a_virtualenv_where_pip_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = externally_managed_python(&dir.path().join("python"));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The throwaway Python refuses, as PEP 668 says.
    let refused = Command::new("python3")
        .args(["-m", "pip", "install", "--dry-run", "kubernetes-validate"])
        .env("PATH", &path)
        .output()
        .expect("pip");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("externally-managed-environment"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // What the test command runs, with that Python first on PATH.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = dir.path().join("tools");
    let setup = Command::new(repo.join("scripts/python-tools.sh"))
        .arg(&venv)
        .env("PATH", &path)
        .output()
        .expect("the set-up script");
    assert!(
        setup.status.success(),
        "{}{}",
        String::from_utf8_lossy(&setup.stdout),
        String::from_utf8_lossy(&setup.stderr)
    );
    let works = Command::new(venv.join("bin/python3"))
        .args(["-c", "import kubernetes_validate, sys; print(sys.prefix)"])
        .output()
        .expect("the venv's Python");
    assert!(works.status.success(), "{works:?}");
    assert!(
        String::from_utf8_lossy(&works.stdout).contains("tools"),
        "installed into the virtualenv"
    );
}
