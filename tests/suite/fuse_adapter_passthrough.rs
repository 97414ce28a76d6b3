//! The FUSE adapter through a real mount: a passthrough core over a temporary directory, driven by real tools.
//! Checks that every callback reaches the core and that errors come back as the contract's errnos.

use crate::common;

use galleryfs::fs::passthrough::PassthroughFs;
use galleryfs::fuse;
use galleryfs::mount_options::MountOptions;
use std::sync::Arc;

#[test]
fn real_tools_through_the_adapter() {
    require_fuse!();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let src = tempfile::tempdir().unwrap();
    let mnt = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("DCIM")).unwrap();
    std::fs::write(src.path().join("DCIM/a.jpg"), b"hello photo").unwrap();

    let core = Arc::new(PassthroughFs::new(src.path()));
    let config = fuse::fuser_config(&MountOptions::default(), "passthrough");
    let mounted = fuse::mount(core, rt.handle().clone(), mnt.path(), &config).expect("mount");
    let m = mnt.path().display().to_string();

    assert!(common::sh_ok(&format!("ls -la '{m}/DCIM'")).contains("a.jpg"));
    assert_eq!(common::sh_ok(&format!("cat '{m}/DCIM/a.jpg'")), "hello photo");
    common::sh_ok(&format!(
        "head -c 3000000 /dev/urandom > '{m}/big.bin' && cmp '{m}/big.bin' '{}/big.bin'",
        src.path().display()
    ));
    common::sh_ok(&format!("mkdir '{m}/Album' && mv '{m}/DCIM/a.jpg' '{m}/Album/b.jpg'"));
    assert_eq!(std::fs::read(src.path().join("Album/b.jpg")).unwrap(), b"hello photo");
    common::sh_ok(&format!(
        "truncate -s 5 '{m}/Album/b.jpg' && touch -d '2024-03-15 14:22:33 UTC' '{m}/Album/b.jpg'"
    ));
    assert_eq!(
        common::sh_ok(&format!("stat -c '%s %Y' '{m}/Album/b.jpg'")).trim(),
        "5 1710512553"
    );
    assert!(common::sh_err(&format!("ln -s x '{m}/link'")).contains("Operation not permitted"));
    assert!(common::sh_err(&format!("ln '{m}/big.bin' '{m}/hard'")).contains("Operation not permitted"));
    assert!(common::sh_err(&format!("mkfifo '{m}/fifo'")).contains("Operation not permitted"));
    assert!(common::sh_err(&format!("rmdir '{m}/Album'")).contains("not empty"));
    common::sh_ok(&format!(
        "rm '{m}/Album/b.jpg' && rmdir '{m}/Album' && rm '{m}/big.bin'"
    ));
    assert!(!src.path().join("Album").exists());
    assert!(common::sh_ok(&format!("df '{m}'")).contains("passthrough"));

    mounted.unmount().expect("unmount");
    assert!(!common::sh_ok("cat /proc/mounts").contains(&m));
}
