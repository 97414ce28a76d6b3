//! `galleryfs desktop install | uninstall` for a user, and the installed actions run on a real mount: each file
//! manager's command line for "Keep on this device", "Free up space" and "Show sync status" is taken from the file
//! `install` wrote (Thunar's uca.xml, Dolphin's service menu, the Nautilus extension or scripts), run the way the
//! file manager runs it, and must change `user.galleryfs.state`. The Nautilus extension runs under python3 with a
//! stand-in for the `gi` bindings that records what it asks of Nautilus (menu items, emblems, the column).

use crate::common;

use common::e2e::Env;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn state(path: &Path) -> String {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", "user.galleryfs.state"])
        .arg(path)
        .output()
        .expect("getfattr (apt-get install attr)");
    assert!(
        out.status.success(),
        "getfattr {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Single-quotes a word for sh (the way Thunar and Dolphin quote %F).
fn q(p: &Path) -> String {
    format!("'{}'", p.to_str().unwrap().replace('\'', r"'\''"))
}

struct Home {
    dir: PathBuf,
}

impl Home {
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("HOME", &self.dir)
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env("XDG_CONFIG_DIRS", self.dir.join("no-system-config"));
        c
    }

    fn galleryfs(&self, args: &[&str]) -> Output {
        self.cmd(env!("CARGO_BIN_EXE_galleryfs")).args(args).output().unwrap()
    }

    fn sh(&self, line: &str) -> Output {
        let out = self.cmd("sh").arg("-c").arg(line).output().unwrap();
        assert!(
            out.status.success(),
            "{line}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// The `<command>` of the Thunar action with this unique id.
fn thunar_command(uca: &str, id: &str) -> String {
    let at = uca
        .find(&format!("<unique-id>{id}</unique-id>"))
        .unwrap_or_else(|| panic!("{id} in {uca}"));
    let rest = &uca[at..];
    let start = rest.find("<command>").unwrap() + "<command>".len();
    let end = rest.find("</command>").unwrap();
    rest[start..end]
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// The `Exec` of the Dolphin action `[Desktop Action NAME]`, as a shell command line (Exec quoting is a subset of
/// sh's double quotes; `%%` is a literal `%`).
fn dolphin_exec(menu: &str, action: &str) -> String {
    let at = menu.find(&format!("[Desktop Action {action}]")).unwrap();
    let line = menu[at..].lines().find(|l| l.starts_with("Exec=")).unwrap();
    line["Exec=".len()..].replace("%%", "%")
}

const GI_STUB: &str = r#"
import subprocess, sys, types
gi = types.ModuleType("gi"); repo = types.ModuleType("gi.repository")
GLib = types.SimpleNamespace(PRIORITY_DEFAULT=0, SpawnFlags=types.SimpleNamespace(DO_NOT_REAP_CHILD=2))
def spawn_async(argv, flags=0):
    r = subprocess.run(argv, capture_output=True, text=True)
    print("spawned:", " ".join(argv[1:4]), "->", r.returncode, r.stdout.strip(), file=sys.stderr)
    return (r.returncode, None, None, None)
GLib.spawn_async = spawn_async
GLib.spawn_close_pid = lambda pid: None
GLib.child_watch_add = lambda prio, pid, cb: cb(pid, 0)
class GObject: pass
class Item:
    def __init__(self, name, label, tip): self.name, self.label, self.handlers = name, label, []
    def connect(self, signal, fn): self.handlers.append(fn)
    def activate(self):
        for h in self.handlers: h(self)
class Column:
    def __init__(self, **kw): self.kw = kw
Nautilus = types.SimpleNamespace(InfoProvider=type("I", (), {}), MenuProvider=type("M", (), {}),
    ColumnProvider=type("C", (), {}), MenuItem=Item, Column=Column)
repo.GLib, repo.GObject, repo.Nautilus = GLib, types.SimpleNamespace(GObject=GObject), Nautilus
gi.repository = repo
sys.modules["gi"], sys.modules["gi.repository"] = gi, repo

class Info:
    def __init__(self, path): self.path, self.emblems, self.attrs, self.invalidated = path, [], {}, 0
    def get_uri_scheme(self): return "file"
    def get_location(self): return types.SimpleNamespace(get_path=lambda: self.path)
    def add_emblem(self, e): self.emblems.append(e)
    def add_string_attribute(self, k, v): self.attrs[k] = v
    def invalidate_extension_info(self): self.invalidated += 1

import importlib.util
spec = importlib.util.spec_from_file_location("galleryfs_ext", sys.argv[1])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
ext = mod.GalleryfsExtension()
verb, target, outside = sys.argv[2], sys.argv[3], sys.argv[4]
assert ext.get_file_items([Info(outside)]) == [], "no galleryfs entries outside a mount"
print("column:", ext.get_columns()[0].kw["label"])
info = Info(target)
items = {i.name.split("::")[1]: i for i in ext.get_file_items([info])}
print("menu:", " | ".join(i.label for i in items.values()))
items[verb].activate()
print("invalidated:", info.invalidated)
ext.update_file_info(info)
print("emblems:", ",".join(info.emblems), "column value:", info.attrs.get("galleryfs_state"))
"#;

#[test]
fn installed_actions_change_the_state_and_uninstall_takes_them_back_out() {
    require_fuse!();
    let env = Env::start(6);
    env.login();
    env.mount("thumbnails=off");
    let camera = env.mnt.join("DCIM/Camera");
    let mut photos: Vec<PathBuf> = std::fs::read_dir(&camera).unwrap().map(|e| e.unwrap().path()).collect();
    photos.sort();
    let photo = photos
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "jpg"))
        .unwrap()
        .clone();
    assert_eq!(state(&photo), "cloud");

    let home = Home {
        dir: env.dir.path().join("home"),
    };
    // The user's own Thunar action and Nautilus script must survive install and uninstall.
    let uca_path = home.dir.join(".config/Thunar/uca.xml");
    std::fs::create_dir_all(uca_path.parent().unwrap()).unwrap();
    let users_uca = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<actions>\n<action>\n\t<icon>utilities-terminal</icon>\n\t<name>Open Terminal Here</name>\n\t<unique-id>1700000000000001-1</unique-id>\n\t<command>exo-open --working-directory %f --launch TerminalEmulator</command>\n\t<description></description>\n\t<patterns>*</patterns>\n\t<directories/>\n</action>\n</actions>\n";
    std::fs::write(&uca_path, users_uca).unwrap();
    let scripts = home.dir.join(".local/share/nautilus/scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("My script"), "#!/bin/sh\necho mine\n").unwrap();

    let out = home.galleryfs(&["desktop", "install"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    println!("{}", String::from_utf8_lossy(&out.stdout));
    let data = home.dir.join(".local/share");
    let uca = std::fs::read_to_string(&uca_path).unwrap();
    assert!(uca.contains("Open Terminal Here"), "{uca}");
    let service_menu = data.join("kio/servicemenus/galleryfs.desktop");
    let menu = std::fs::read_to_string(&service_menu).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_ne!(
        std::fs::metadata(&service_menu).unwrap().permissions().mode() & 0o111,
        0,
        "KIO wants it executable"
    );
    let extension = data.join("nautilus-python/extensions/galleryfs.py");
    assert!(extension.exists());
    for e in ["cloud", "cached", "pinned", "dirty", "conflict"] {
        assert!(data
            .join(format!("icons/hicolor/scalable/emblems/galleryfs-{e}.svg"))
            .exists());
    }

    // Thunar: "Keep on this device" (Thunar substitutes %F with the quoted selection and runs the line).
    let line = thunar_command(&uca, "galleryfs-keep").replace("%F", &q(&photo));
    home.sh(&line);
    assert_eq!(state(&photo), "pinned", "after Thunar's {line}");

    // Dolphin: "Free up space".
    let line = dolphin_exec(&menu, "galleryfs_free").replace("%F", &q(&photo));
    home.sh(&line);
    assert_eq!(state(&photo), "cloud", "after Dolphin's {line}");

    // Nautilus (extension): the menu of a file in the mount, "Keep on this device", then the emblem it shows.
    let outside = env.dir.path().join("outside.txt");
    std::fs::write(&outside, "x").unwrap();
    let py = home
        .cmd("python3")
        .arg("-c")
        .arg(GI_STUB)
        .arg(&extension)
        .arg("keep")
        .arg(&photo)
        .arg(&outside)
        .output()
        .expect("python3");
    let py_out = String::from_utf8_lossy(&py.stdout);
    assert!(py.status.success(), "{py_out}\n{}", String::from_utf8_lossy(&py.stderr));
    println!("{py_out}");
    assert!(
        py_out.contains("menu: Keep on this device | Free up space | Show sync status"),
        "{py_out}"
    );
    assert!(
        py_out.contains("emblems: galleryfs-pinned column value: Always on this device"),
        "{py_out}"
    );
    assert!(py_out.contains("invalidated: 1"), "{py_out}");
    assert_eq!(
        state(&photo),
        "pinned",
        "after the Nautilus extension's Keep on this device"
    );

    // Nautilus scripts, where they were installed (no nautilus-python): "Free up space" on the selection.
    let script = scripts.join("Free up space");
    if script.exists() {
        home.sh(&format!(
            "cd {} && {} {}",
            q(&camera),
            q(&script),
            q(photo.file_name().unwrap().as_ref())
        ));
        assert_eq!(state(&photo), "cloud", "after the Nautilus script");
        home.sh(&format!("{} {}", q(&scripts.join("Keep on this device")), q(&photo)));
        assert_eq!(state(&photo), "pinned");
    }

    // "Show sync status" (Thunar's) prints the state where there is no display to show it in.
    let line = thunar_command(&uca, "galleryfs-status").replace("%F", &q(&photo));
    let out = home.sh(&line);
    let told = String::from_utf8_lossy(&out.stdout);
    let name = photo.file_name().unwrap().to_str().unwrap();
    assert!(
        told.starts_with(&format!("{name}: always kept on this device; ")),
        "{told}"
    );
    // Dolphin's "Free up space" again: back online only.
    home.sh(&dolphin_exec(&menu, "galleryfs_free").replace("%F", &q(&photo)));
    assert_eq!(state(&photo), "cloud");

    // An action on a file outside any mount fails and says why.
    let out = home
        .cmd("sh")
        .arg("-c")
        .arg(thunar_command(&uca, "galleryfs-keep").replace("%F", &q(&outside)))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not inside a galleryfs mount"));

    // Installing again changes nothing; uninstall restores the user's files exactly.
    assert!(home.galleryfs(&["desktop", "install"]).status.success());
    assert_eq!(std::fs::read_to_string(&uca_path).unwrap(), uca);
    let out = home.galleryfs(&["desktop", "uninstall"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&uca_path).unwrap(), users_uca);
    assert!(!service_menu.exists() && !extension.exists());
    assert!(!data.join("icons/hicolor/scalable/emblems/galleryfs-cloud.svg").exists());
    assert!(!scripts.join("Keep on this device").exists());
    assert_eq!(
        std::fs::read_to_string(scripts.join("My script")).unwrap(),
        "#!/bin/sh\necho mine\n"
    );
    env.unmount();
}

/// Without a uca.xml of the user's, install starts from the system's default actions (as Thunar shows them),
/// and a service menu of the same name that galleryfs did not write is left alone.
#[test]
fn thunar_defaults_are_kept_and_foreign_files_are_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home {
        dir: dir.path().to_path_buf(),
    };
    let system = dir.path().join("no-system-config/Thunar");
    std::fs::create_dir_all(&system).unwrap();
    std::fs::write(
        system.join("uca.xml"),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<actions>\n<action>\n\t<name>Search</name>\n\t<unique-id>1478299986332441-1</unique-id>\n\t<command>catfish --path=%f</command>\n</action>\n</actions>\n",
    )
    .unwrap();
    let out = home.galleryfs(&["desktop", "install"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let uca = std::fs::read_to_string(dir.path().join(".config/Thunar/uca.xml")).unwrap();
    assert!(
        uca.contains("catfish --path=%f") && uca.contains("galleryfs-keep"),
        "{uca}"
    );
    assert!(home.galleryfs(&["desktop", "uninstall"]).status.success());

    let menu = dir.path().join(".local/share/kio/servicemenus/galleryfs.desktop");
    std::fs::write(&menu, "[Desktop Entry]\nType=Service\n").unwrap();
    let out = home.galleryfs(&["desktop", "install"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("was not written by galleryfs"));
    assert_eq!(
        std::fs::read_to_string(&menu).unwrap(),
        "[Desktop Entry]\nType=Service\n"
    );
    assert!(home.galleryfs(&["desktop", "uninstall"]).status.success());
    assert!(menu.exists(), "uninstall leaves a file galleryfs did not write");
}
