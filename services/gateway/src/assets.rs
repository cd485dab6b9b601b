//! Where the page's files are. `--static-dir` names them; left at its default (`static`,
//! relative), they are also looked for beside the binary and in the source tree it was built
//! from, so `local-stack` works from any directory. A folder without `index.html` is refused
//! at startup with a clear message rather than served as an empty 404.

use std::path::{Path, PathBuf};

/// The default `--static-dir`.
pub const DEFAULT: &str = "static";

/// The folder to serve: `given` if it holds the page; for the default, the first of the usual
/// places that does.
pub fn locate(given: &Path) -> anyhow::Result<PathBuf> {
    let has_page = |dir: &Path| dir.join("index.html").is_file();
    if has_page(given) {
        return Ok(given.to_owned());
    }
    if given == Path::new(DEFAULT) {
        let beside_binary = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_owned))
            .into_iter()
            // Beside the binary, or two levels up from target/<profile>/<binary>.
            .flat_map(|dir| [dir.join(DEFAULT), dir.join("../..").join(DEFAULT)]);
        let source_tree = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../static");
        if let Some(found) = beside_binary.chain([source_tree]).find(|dir| has_page(dir)) {
            return Ok(found);
        }
    }
    anyhow::bail!(
        "--static-dir {}: no index.html there; run from the repository's root or point --static-dir (STATIC_DIR) at the folder of the page",
        given.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_found_from_anywhere_and_a_wrong_folder_is_refused() {
        let found = locate(Path::new(DEFAULT)).expect("the page");
        assert!(found.join("index.html").is_file(), "{}", found.display());
        let error = locate(Path::new("/nonexistent")).expect_err("no page");
        assert!(error.to_string().contains("STATIC_DIR"), "{error}");
    }
}
