//! The Debian package end to end, as `packaging/build-deb.sh` builds it (cargo-deb) from this build's binary:
//! `dpkg -i` installs it, fstab lines of type `fuse.galleryfs` (mount.fuse3) and `galleryfs` (the packaged
//! mount.galleryfs) mount the emulator's gallery with `mount -a -T FILE`, served by the packaged /usr/bin/galleryfs;
//! `man galleryfs` renders, the bash completion loads, and `dpkg -r` leaves none of the package's files behind.
//!
//! Everything that touches the system runs in a private mount namespace whose /usr, /var (and /sbin where it is
//! not a link into /usr) are copy-on-write overlays: the machine's dpkg database, /etc/fstab and any galleryfs
//! already installed outside the package are never changed, and another galleryfs in /usr/local/bin is hidden
//! from the test only.

use crate::common;

use common::e2e::Env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tool the test needs is missing: a failure where every test must run (CI), else a plain skip message.
fn missing(what: &str) -> bool {
    let required = std::env::var_os("GALLERYFS_REQUIRE_ALL").is_some_and(|v| v == "1")
        || std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    assert!(!required, "package_deb needs {what}");
    eprintln!("SKIPPED: package_deb needs {what}");
    true
}

fn works(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd).args(args).output().is_ok_and(|o| o.status.success())
}

/// Runs inside `unshare --mount --propagation private`: $1 the .deb, $2 a scratch dir, $3 the fstab file,
/// $4 and $5 the two mount points.
const IN_NAMESPACE: &str = r#"
set -eu
deb=$1; scratch=$2; fstab=$3; mnt1=$4; mnt2=$5
# The overlays' upper layers live on a tmpfs of this namespace (overlayfs wants an upper layer it supports).
mount -t tmpfs galleryfs-package-test "$scratch"
for d in usr var sbin; do
  if [ -d "/$d" ] && [ ! -L "/$d" ]; then
    mkdir -p "$scratch/$d.upper" "$scratch/$d.work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$scratch/$d.upper,workdir=$scratch/$d.work" "/$d"
  fi
done
# Only the package's binary may answer: hide any other galleryfs (in this namespace's overlay only).
rm -f /usr/local/bin/galleryfs /usr/local/sbin/mount.galleryfs
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

echo "== dpkg -i"
dpkg --path-include='/usr/share/man/*' -i "$deb"
[ "$(dpkg-query -W -f='${db:Status-Status}' galleryfs)" = installed ]
dpkg -L galleryfs >"$scratch/files"
for f in /usr/bin/galleryfs /sbin/mount.galleryfs /usr/lib/systemd/user/galleryfs@.service \
         /usr/share/man/man1/galleryfs.1.gz /usr/share/man/man1/galleryfs-mount.1.gz \
         /usr/share/bash-completion/completions/galleryfs /usr/share/zsh/vendor-completions/_galleryfs \
         /usr/share/fish/vendor_completions.d/galleryfs.fish; do
  [ -e "$f" ] || { echo "missing after install: $f"; exit 1; }
done
grep -q '^ExecStart=/usr/bin/galleryfs mount --account %i' /usr/lib/systemd/user/galleryfs@.service
/usr/bin/galleryfs --version

echo "== mount -a -T $fstab"
mount -a -T "$fstab"
for m in "$mnt1" "$mnt2"; do
  mountpoint -q "$m" || { echo "$m is not mounted"; exit 1; }
  echo "listing $m/DCIM/Camera:"; ls "$m/DCIM/Camera" | head -3
  [ -n "$(ls "$m/DCIM/Camera")" ]
  exe=""
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- " $m"; then
      e=$(readlink "$p/exe" 2>/dev/null || true)
      case "$e" in */galleryfs) exe=$e ;; esac
    fi
  done
  echo "served by: $exe"
  [ "$exe" = /usr/bin/galleryfs ]
done
findmnt -n -o FSTYPE,TARGET "$mnt1"
findmnt -n -o FSTYPE,TARGET "$mnt2"

echo "== man galleryfs"
MANPAGER=cat MANWIDTH=100 man galleryfs >"$scratch/man.txt"
grep -q 'galleryfs-mount(1)' "$scratch/man.txt"
grep -q 'fuse.galleryfs' "$scratch/man.txt"
head -8 "$scratch/man.txt"
MANPAGER=cat MANWIDTH=100 man galleryfs-pin | grep -q 'Always keep these files on this device'
bash -c '. /usr/share/bash-completion/completions/galleryfs && complete -p galleryfs'

umount "$mnt1"
umount "$mnt2"

echo "== dpkg -r"
dpkg -r galleryfs
status=$(dpkg-query -W -f='${db:Status-Status}' galleryfs 2>/dev/null || echo not-installed)
[ "$status" = not-installed ] || { echo "after dpkg -r the status is $status"; exit 1; }
left=0
while read -r f; do
  if [ ! -d "$f" ] && [ -e "$f" ]; then echo "left behind: $f"; left=1; fi
done <"$scratch/files"
[ ! -e /usr/share/doc/galleryfs ] || { echo "left behind: /usr/share/doc/galleryfs"; left=1; }
[ "$left" = 0 ]
echo "== removed cleanly"
"#;

#[test]
fn the_package_installs_mounts_from_fstab_renders_its_man_page_and_removes_cleanly() {
    require_fuse!();
    if !nix::unistd::geteuid().is_root() && missing("root (dpkg -i, mount -a)") {
        return;
    }
    for (tool, args) in [
        ("cargo", &["deb", "--version"][..]),
        ("unshare", &["--version"][..]),
        ("dpkg", &["--version"][..]),
        ("man", &["--version"][..]),
        ("mount.fuse3", &["-h"][..]),
    ] {
        let found =
            works(tool, args) || Path::new("/sbin").join(tool).exists() || Path::new("/usr/sbin").join(tool).exists();
        let what = match tool {
            "cargo" => "cargo-deb (cargo install cargo-deb --locked)".to_string(),
            "mount.fuse3" => "mount.fuse3 (apt-get install fuse3)".to_string(),
            t => t.to_string(),
        };
        if !found && missing(&what) {
            return;
        }
    }

    let status_before = dpkg_status();
    let env = Env::start(6);
    env.login();
    let emu = env.emu();
    env.galleryfs_ok(&[
        "login",
        "--account",
        "second",
        "--graph-url",
        &emu.graph_url(),
        "--login-url",
        &emu.login_url(),
    ]);

    // cargo-deb reads what [package.metadata.deb] calls target/release/ from $CARGO_TARGET_DIR: a scratch target
    // dir (inside the real one, so the binary can be hard-linked) whose release/galleryfs is this build's binary.
    let bin = Path::new(env!("CARGO_BIN_EXE_galleryfs"));
    let target_dir = bin.parent().and_then(Path::parent).expect("target dir");
    let scratch = tempfile::tempdir_in(target_dir).unwrap();
    let pkg_target = scratch.path().join("target");
    std::fs::create_dir_all(pkg_target.join("release")).unwrap();
    let staged = pkg_target.join("release/galleryfs");
    if std::fs::hard_link(bin, &staged).is_err() {
        std::fs::copy(bin, &staged).unwrap();
    }
    let debs = scratch.path().join("debs");
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/build-deb.sh"))
        .args(["--no-build", "--fast", "--strip", "-o"])
        .arg(&debs)
        .env("CARGO_TARGET_DIR", &pkg_target)
        .output()
        .expect("run packaging/build-deb.sh");
    assert!(
        out.status.success(),
        "build-deb.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let deb: PathBuf = std::fs::read_dir(&debs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb was written");

    let mnt2 = env.dir.path().join("Gallery2");
    std::fs::create_dir(&mnt2).unwrap();
    let fstab = scratch.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# galleryfs package test\n\
             default  {}  fuse.galleryfs  rw,_netdev,thumbnails=off,poll_interval=600  0 0\n\
             second   {}  galleryfs       rw,_netdev,thumbnails=off,poll_interval=600  0 0\n",
            env.mnt.display(),
            mnt2.display()
        ),
    )
    .unwrap();
    let ns = scratch.path().join("ns");
    std::fs::create_dir(&ns).unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", IN_NAMESPACE, "sh"])
        .arg(&deb)
        .arg(&ns)
        .arg(&fstab)
        .arg(&env.mnt)
        .arg(&mnt2)
        .env("GALLERYFS_CONFIG_DIR", env.dir.path().join("config"))
        .env("GALLERYFS_CACHE_DIR", env.cache_dir())
        .env("XDG_CACHE_HOME", env.xdg_cache())
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "in the namespace:\n{stdout}\n{stderr}");
    assert!(stdout.contains("== removed cleanly"), "{stdout}");
    // Nothing reached the machine outside the namespace: its dpkg record of galleryfs is as it was.
    assert_eq!(dpkg_status(), status_before, "the machine's dpkg database changed");
}

/// What the machine's dpkg database says of a package named galleryfs (usually that it knows none).
fn dpkg_status() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev} ${Version}", "galleryfs"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
