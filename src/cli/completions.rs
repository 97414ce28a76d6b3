//! `galleryfs completions SHELL` prints a completion script (clap_complete), and the hidden `galleryfs manpages
//! DIR` writes the man pages (clap_mangen): `galleryfs.1` and one `galleryfs-SUBCOMMAND.1` per visible
//! subcommand. Both are generated from the same clap definition the binary parses with, so they cannot drift
//! from it; packaging (packaging/build-deb.sh) runs them on the freshly built binary.

use super::Cli;
use crate::error::CliError;
use clap::CommandFactory;
use std::path::Path;

pub fn completions(shell: clap_complete::Shell) -> Result<(), CliError> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "galleryfs", &mut std::io::stdout());
    Ok(())
}

pub fn manpages(dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|e| CliError::failure(format!("{}: {e}", dir.display())))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .map_err(|e| CliError::failure(format!("writing man pages into {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_cover_the_visible_commands_only() {
        let dir = tempfile::tempdir().unwrap();
        manpages(dir.path()).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for want in [
            "galleryfs.1",
            "galleryfs-mount.1",
            "galleryfs-desktop.1",
            "galleryfs-desktop-install.1",
        ] {
            assert!(names.contains(&want.to_string()), "{want} in {names:?}");
        }
        assert!(
            !names
                .iter()
                .any(|n| n.contains("manpages") || n.contains("desktop-run")),
            "{names:?}"
        );
        let main = std::fs::read_to_string(dir.path().join("galleryfs.1")).unwrap();
        assert!(main.starts_with(".ie") || main.contains(".TH galleryfs 1"), "{main}");
        assert!(main.contains("OneDrive"), "{main}");
    }
}
