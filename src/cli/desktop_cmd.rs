//! `galleryfs desktop install | uninstall`: "Keep on this device", "Free up space" and "Show sync status" in the
//! context menus of Nautilus, Dolphin and Thunar for the current user, through each file manager's own extension
//! point, plus state emblems where one needs no compiled plugin:
//! - Nautilus: a nautilus-python extension (menu items shown only inside a galleryfs mount, an emblem per file
//!   from `user.galleryfs.state`, a "OneDrive" list column); where nautilus-python is not installed, three
//!   Nautilus scripts instead (Scripts submenu);
//! - Dolphin: a KIO service menu;
//! - Thunar: three custom actions merged into `~/.config/Thunar/uca.xml`, keeping the user's own actions (when the
//!   user has no such file yet, it starts from the system's default actions, as Thunar itself would);
//! - the emblem icons in the user's hicolor icon theme.
//!
//! Every action runs `galleryfs desktop run pin|free|status PATH...` (hidden), which runs `galleryfs pin`, `free`
//! or `status` on the selection and shows the outcome in a dialog or notification (zenity, kdialog, xmessage or
//! notify-send, whichever is there). Every file written carries [`MARKER`]; `uninstall` removes only files that
//! carry it and only the Thunar actions whose unique id starts with `galleryfs-`.

use crate::error::CliError;
use quick_xml::events::{BytesEnd, BytesStart, Event};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Written into every file `install` creates; `uninstall` touches no file without it.
pub const MARKER: &str = "galleryfs desktop install";

/// What a menu entry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    Pin,
    Free,
    Status,
}

impl Action {
    const ALL: [Action; 3] = [Action::Pin, Action::Free, Action::Status];

    fn verb(self) -> &'static str {
        match self {
            Action::Pin => "pin",
            Action::Free => "free",
            Action::Status => "status",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Action::Pin => "keep",
            Action::Free => "free",
            Action::Status => "status",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Action::Pin => "Keep on this device",
            Action::Free => "Free up space",
            Action::Status => "Show sync status",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Action::Pin => "Download these OneDrive files and always keep them on this device (galleryfs pin)",
            Action::Free => "Keep these files online only and give their space back (galleryfs free)",
            Action::Status => "Show whether these files are on this device or online only (galleryfs status)",
        }
    }

    fn icon(self) -> &'static str {
        match self {
            Action::Pin => "galleryfs-pinned",
            Action::Free => "galleryfs-cloud",
            Action::Status => "dialog-information",
        }
    }
}

const NAUTILUS_EXTENSION: &str = include_str!("../../desktop/nautilus/galleryfs.py");
const EMBLEMS: [(&str, &str); 5] = [
    (
        "galleryfs-cloud.svg",
        include_str!("../../desktop/icons/galleryfs-cloud.svg"),
    ),
    (
        "galleryfs-cached.svg",
        include_str!("../../desktop/icons/galleryfs-cached.svg"),
    ),
    (
        "galleryfs-pinned.svg",
        include_str!("../../desktop/icons/galleryfs-pinned.svg"),
    ),
    (
        "galleryfs-dirty.svg",
        include_str!("../../desktop/icons/galleryfs-dirty.svg"),
    ),
    (
        "galleryfs-conflict.svg",
        include_str!("../../desktop/icons/galleryfs-conflict.svg"),
    ),
];

/// The user's directories (XDG base directories, `~/.local/share` and `~/.config` by default).
struct Places {
    data: PathBuf,
    config: PathBuf,
}

impl Places {
    fn of_current_user() -> Result<Places, CliError> {
        match (dirs::data_dir(), dirs::config_dir()) {
            (Some(data), Some(config)) => Ok(Places { data, config }),
            _ => Err(CliError::failure("cannot tell the home directory (HOME is not set)")),
        }
    }

    fn nautilus_extension(&self) -> PathBuf {
        self.data.join("nautilus-python/extensions/galleryfs.py")
    }

    fn nautilus_script(&self, a: Action) -> PathBuf {
        self.data.join("nautilus/scripts").join(a.label())
    }

    fn dolphin_service_menu(&self) -> PathBuf {
        self.data.join("kio/servicemenus/galleryfs.desktop")
    }

    fn emblem(&self, file: &str) -> PathBuf {
        self.data.join("icons/hicolor/scalable/emblems").join(file)
    }

    fn thunar_uca(&self) -> PathBuf {
        self.config.join("Thunar/uca.xml")
    }
}

/// A file `install` writes.
struct Planned {
    path: PathBuf,
    content: String,
    executable: bool,
}

fn failure(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::failure(format!("{}: {e}", path.display()))
}

fn this_exe() -> Result<String, CliError> {
    let exe = std::env::current_exe().map_err(|e| CliError::failure(format!("cannot tell where galleryfs is: {e}")))?;
    exe.to_str()
        .map(str::to_string)
        .ok_or_else(|| CliError::failure(format!("{}: the path is not UTF-8", exe.display())))
}

/// Quotes a word for a POSIX shell (and for GLib's `g_shell_parse_argv`, which Thunar uses).
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Quotes an argument for a desktop entry's `Exec` key (Desktop Entry Specification, "The Exec key").
fn exec_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '`' | '$' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether nautilus-python is installed (its loader library in Nautilus's extension directory).
fn nautilus_python_installed() -> bool {
    for lib in ["/usr/lib", "/usr/lib64", "/usr/local/lib"] {
        let mut dirs = vec![PathBuf::from(lib)];
        if let Ok(rd) = std::fs::read_dir(lib) {
            dirs.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
        }
        for d in dirs {
            for ext in ["nautilus/extensions-4", "nautilus/extensions-3.0"] {
                if d.join(ext).join("libnautilus-python.so").exists() {
                    return true;
                }
            }
        }
    }
    false
}

fn nautilus_extension(exe: &str) -> String {
    let literal = serde_json::to_string(exe).expect("a string serializes");
    NAUTILUS_EXTENSION.replace("@GALLERYFS@", &literal)
}

fn nautilus_script(exe: &str, a: Action) -> String {
    format!(
        "#!/bin/sh\n# {label}: a Nautilus script installed by `{MARKER}`.\nexec {exe} desktop run {verb} \"$@\"\n",
        label = a.label(),
        exe = shell_quote(exe),
        verb = a.verb()
    )
}

fn dolphin_service_menu(exe: &str) -> String {
    let mut s = format!(
        "# Installed by `{MARKER}`; `galleryfs desktop uninstall` removes it.\n\
         [Desktop Entry]\n\
         Type=Service\n\
         MimeType=all/allfiles;inode/directory;\n\
         X-KDE-Protocols=file\n\
         Actions={};\n",
        Action::ALL
            .iter()
            .map(|a| format!("galleryfs_{}", a.key()))
            .collect::<Vec<_>>()
            .join(";")
    );
    for a in Action::ALL {
        s.push_str(&format!(
            "\n[Desktop Action galleryfs_{key}]\nName={label}\nIcon={icon}\nExec={exe} desktop run {verb} %F\n",
            key = a.key(),
            label = a.label(),
            icon = a.icon(),
            exe = exec_quote(exe),
            verb = a.verb()
        ));
    }
    s
}

/// Our Thunar custom actions, as the XML fragment `merge_uca` puts before `</actions>`.
fn thunar_actions(exe: &str) -> String {
    use quick_xml::escape::partial_escape as escape;
    let mut s = String::new();
    for a in Action::ALL {
        s.push_str(&format!(
            "\n<action>\n\t<icon>{icon}</icon>\n\t<name>{name}</name>\n\t<submenu></submenu>\n\
             \t<unique-id>galleryfs-{key}</unique-id>\n\t<command>{command}</command>\n\
             \t<description>{description}</description>\n\t<range></range>\n\t<patterns>*</patterns>\n\
             \t<directories/>\n\t<audio-files/>\n\t<image-files/>\n\t<other-files/>\n\t<text-files/>\n\
             \t<video-files/>\n</action>",
            icon = a.icon(),
            name = escape(a.label()),
            key = a.key(),
            command = escape(format!("{} desktop run {} %F", shell_quote(exe), a.verb())),
            description = escape(a.description()),
        ));
    }
    s
}

/// Rewrites a Thunar `uca.xml`: every action whose `unique-id` starts with `galleryfs-` is dropped (with the
/// blank before it), everything else is kept byte for byte, and `ours` (when given) goes in before `</actions>`.
fn merge_uca(existing: &str, ours: Option<&str>) -> Result<String, quick_xml::Error> {
    let mut reader = quick_xml::Reader::from_str(existing);
    let mut writer = quick_xml::Writer::new(Vec::new());
    let mut depth = 0usize;
    let mut saw_root = false;
    // Whitespace waiting to be written: dropped when it precedes one of our actions.
    let mut pending: Option<Event<'static>> = None;
    let mut action: Option<Vec<Event<'static>>> = None;
    loop {
        let event = reader.read_event()?.into_owned();
        if let Some(events) = action.as_mut() {
            let end = matches!(&event, Event::End(_));
            if matches!(&event, Event::Start(_)) {
                depth += 1;
            }
            if end {
                depth -= 1;
            }
            events.push(event);
            if end && depth == 1 {
                let events = action.take().expect("inside an action");
                if !is_ours(&events) {
                    if let Some(p) = pending.take() {
                        writer.write_event(p)?;
                    }
                    for e in events {
                        writer.write_event(e)?;
                    }
                } else {
                    pending = None;
                }
            }
            continue;
        }
        match event {
            Event::Eof => break,
            Event::Text(t) if t.iter().all(u8::is_ascii_whitespace) => {
                if let Some(p) = pending.take() {
                    writer.write_event(p)?;
                }
                pending = Some(Event::Text(t));
            }
            Event::Start(s) if depth == 1 && s.name().as_ref() == b"action" => {
                depth += 1;
                action = Some(vec![Event::Start(s)]);
            }
            Event::Empty(s) if depth == 0 && s.name().as_ref() == b"actions" => {
                saw_root = true;
                flush(&mut writer, &mut pending)?;
                writer.write_event(Event::Start(BytesStart::new("actions")))?;
                if let Some(ours) = ours {
                    writer.get_mut().extend_from_slice(ours.as_bytes());
                    writer.get_mut().push(b'\n');
                }
                writer.write_event(Event::End(BytesEnd::new("actions")))?;
            }
            Event::End(e) if depth == 1 && e.name().as_ref() == b"actions" => {
                depth = 0;
                if let Some(ours) = ours {
                    writer.get_mut().extend_from_slice(ours.as_bytes());
                    if pending.is_none() {
                        writer.get_mut().push(b'\n');
                    }
                }
                flush(&mut writer, &mut pending)?;
                writer.write_event(Event::End(e))?;
            }
            other => {
                match &other {
                    Event::Start(s) => {
                        if depth == 0 && s.name().as_ref() == b"actions" {
                            saw_root = true;
                        }
                        depth += 1;
                    }
                    Event::End(_) => depth = depth.saturating_sub(1),
                    _ => {}
                }
                flush(&mut writer, &mut pending)?;
                writer.write_event(other)?;
            }
        }
    }
    flush(&mut writer, &mut pending)?;
    if !saw_root {
        return Err(quick_xml::Error::Syntax(quick_xml::errors::SyntaxError::UnclosedTag));
    }
    Ok(String::from_utf8_lossy(&writer.into_inner()).into_owned())
}

fn flush(writer: &mut quick_xml::Writer<Vec<u8>>, pending: &mut Option<Event<'static>>) -> std::io::Result<()> {
    if let Some(p) = pending.take() {
        writer.write_event(p)?;
    }
    Ok(())
}

/// Whether an `<action>` element (as events) is one of ours: its `unique-id` starts with `galleryfs-`.
fn is_ours(events: &[Event<'_>]) -> bool {
    events.windows(2).any(|w| match (&w[0], &w[1]) {
        (Event::Start(s), Event::Text(t)) if s.name().as_ref() == b"unique-id" => {
            t.as_ref().trim_ascii_start().starts_with(b"galleryfs-")
        }
        _ => false,
    })
}

/// The `uca.xml` to start from when the user has none: the system's default actions, as Thunar would show them.
fn default_uca() -> String {
    let dirs = std::env::var("XDG_CONFIG_DIRS")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "/etc/xdg".into());
    for d in dirs.split(':').filter(|d| !d.is_empty()) {
        if let Ok(s) = std::fs::read_to_string(Path::new(d).join("Thunar/uca.xml")) {
            return s;
        }
    }
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<actions>\n</actions>\n".into()
}

fn write_file(p: &Planned) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = p.path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| failure(dir, e))?;
    }
    if p.path.exists() && !carries_marker(&p.path) {
        return Err(CliError::failure(format!(
            "{} exists and was not written by galleryfs; left as it is (move it away and run again)",
            p.path.display()
        )));
    }
    let tmp = p.path.with_extension("galleryfs-tmp");
    std::fs::write(&tmp, &p.content).map_err(|e| failure(&tmp, e))?;
    let mode = if p.executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(|e| failure(&tmp, e))?;
    std::fs::rename(&tmp, &p.path).map_err(|e| failure(&p.path, e))
}

fn carries_marker(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s.contains(MARKER))
}

/// Writes `uca.xml` with our actions merged in (`Some`) or taken out (`None`).
fn update_thunar(path: &Path, ours: Option<&str>) -> Result<bool, CliError> {
    let existing = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if ours.is_none() {
                return Ok(false);
            }
            default_uca()
        }
        Err(e) => return Err(failure(path, e)),
    };
    let merged = merge_uca(&existing, ours).map_err(|e| {
        CliError::failure(format!(
            "{}: not a Thunar actions file ({e}); left as it is",
            path.display()
        ))
    })?;
    if merged == existing {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| failure(dir, e))?;
    }
    let tmp = path.with_extension("xml.galleryfs-tmp");
    std::fs::write(&tmp, merged).map_err(|e| failure(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| failure(path, e))?;
    Ok(true)
}

pub fn install() -> Result<(), CliError> {
    let places = Places::of_current_user()?;
    let exe = this_exe()?;
    let mut files = vec![
        Planned {
            path: places.nautilus_extension(),
            content: nautilus_extension(&exe),
            executable: false,
        },
        Planned {
            path: places.dolphin_service_menu(),
            content: dolphin_service_menu(&exe),
            // KIO runs only executable service menus from the user's directory.
            executable: true,
        },
    ];
    let with_scripts = !nautilus_python_installed();
    if with_scripts {
        for a in Action::ALL {
            files.push(Planned {
                path: places.nautilus_script(a),
                content: nautilus_script(&exe, a),
                executable: true,
            });
        }
    }
    for (name, svg) in EMBLEMS {
        files.push(Planned {
            path: places.emblem(name),
            content: svg.to_string(),
            executable: false,
        });
    }
    for f in &files {
        write_file(f)?;
    }
    if !with_scripts {
        // Scripts from an install made before nautilus-python was there would double the menu entries.
        for a in Action::ALL {
            remove_ours(&places.nautilus_script(a))?;
        }
    }
    update_thunar(&places.thunar_uca(), Some(&thunar_actions(&exe)))?;
    refresh_icon_cache(&places);
    println!("Installed the galleryfs actions for {exe}:");
    if with_scripts {
        println!(
            "  Nautilus: Scripts > Keep on this device / Free up space / Show sync status ({}); install \
             nautilus-python (python3-nautilus) for menu entries and state emblems, then run this again",
            places.data.join("nautilus/scripts").display()
        );
    } else {
        println!(
            "  Nautilus: menu entries, state emblems and a OneDrive column ({}); restart Nautilus: nautilus -q",
            places.nautilus_extension().display()
        );
    }
    println!("  Dolphin: {}", places.dolphin_service_menu().display());
    println!(
        "  Thunar: custom actions in {}; restart Thunar: thunar -q",
        places.thunar_uca().display()
    );
    Ok(())
}

pub fn uninstall() -> Result<(), CliError> {
    let places = Places::of_current_user()?;
    let mut removed = 0;
    let mut paths = vec![places.nautilus_extension(), places.dolphin_service_menu()];
    paths.extend(Action::ALL.iter().map(|a| places.nautilus_script(*a)));
    paths.extend(EMBLEMS.iter().map(|(name, _)| places.emblem(name)));
    for p in &paths {
        if remove_ours(p)? {
            removed += 1;
        }
    }
    if update_thunar(&places.thunar_uca(), None)? {
        removed += 1;
    }
    refresh_icon_cache(&places);
    println!("Removed the galleryfs desktop actions ({removed} file(s) changed).");
    Ok(())
}

fn remove_ours(path: &Path) -> Result<bool, CliError> {
    if !carries_marker(path) {
        return Ok(false);
    }
    std::fs::remove_file(path).map_err(|e| failure(path, e))?;
    Ok(true)
}

/// A user icon theme with a cache file hides icons added after it was made: bring it up to date.
fn refresh_icon_cache(places: &Places) {
    let theme = places.data.join("icons/hicolor");
    if theme.join("icon-theme.cache").exists() {
        let _ = Command::new("gtk-update-icon-cache")
            .arg("-f")
            .arg("-t")
            .arg(&theme)
            .output();
    }
}

/// `galleryfs desktop run ACTION PATH...`: what the menu entries call. Runs `galleryfs pin|free|status` on the
/// paths and shows the outcome on the desktop (in a terminal or without a display, on stdout and stderr).
pub fn run(action: Action, paths: &[PathBuf]) -> Result<(), CliError> {
    if paths.is_empty() {
        return Err(CliError::usage("usage: galleryfs desktop run pin|free|status PATH..."));
    }
    let exe = std::env::current_exe().map_err(|e| CliError::failure(format!("cannot tell where galleryfs is: {e}")))?;
    let mut cmd = Command::new(&exe);
    cmd.arg(action.verb());
    if action == Action::Status {
        cmd.arg("--json");
    }
    let out = cmd.args(paths).output().map_err(|e| failure(&exe, e))?;
    let mut stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if action == Action::Status && out.status.success() {
        stdout = describe_status(&stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let graphical = std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !graphical {
        if !stdout.is_empty() {
            println!("{stdout}");
        }
        if !stderr.is_empty() {
            eprintln!("{stderr}");
        }
    } else if !out.status.success() {
        dialog(Kind::Error, "galleryfs", &stderr);
    } else {
        let what = match paths.len() {
            1 => paths[0]
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| paths[0].display().to_string()),
            n => format!("{n} items"),
        };
        match action {
            Action::Status => dialog(Kind::Info, "OneDrive sync status", &stdout),
            Action::Pin => notify("Kept on this device", &what),
            Action::Free => notify("Space freed", &format!("{what} ({stderr})")),
        }
    }
    if out.status.success() {
        Ok(())
    } else {
        Err(CliError {
            message: format!("{} failed", action.verb()),
            code: out.status.code().unwrap_or(crate::error::exit::FAILURE),
        })
    }
}

/// `status PATH --json` lines, told for people: one line per file, its state in the words the menus use.
fn describe_status(json_lines: &str) -> String {
    json_lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            let path = v["path"].as_str().unwrap_or("");
            let name = Path::new(path).file_name().map_or(path.into(), |n| n.to_string_lossy());
            let size = v["size"].as_u64().unwrap_or(0);
            let here = v["cached_bytes"].as_u64().unwrap_or(0);
            let state = match v["state"].as_str().unwrap_or("") {
                "folder" => return format!("{name}: a folder"),
                "cloud" => "online only",
                "cached" => "on this device (freed again when space is needed)",
                "pinned" => "always kept on this device",
                "dirty" => "changed here, waiting to upload",
                "conflict" => "in conflict (changed here and on OneDrive)",
                other => other,
            };
            format!("{name}: {state}; {} of {} on this device", bytes(here), bytes(size))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[derive(Clone, Copy)]
enum Kind {
    Info,
    Error,
}

fn have(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn on_kde() -> bool {
    std::env::var("XDG_CURRENT_DESKTOP").is_ok_and(|d| d.to_ascii_uppercase().contains("KDE"))
}

/// Shows a message in a window: kdialog on KDE, else zenity, kdialog, xmessage, and notify-send as a last resort.
fn dialog(kind: Kind, title: &str, text: &str) {
    let mut tools = vec!["zenity", "kdialog", "xmessage", "notify-send"];
    if on_kde() {
        tools.insert(0, "kdialog");
    }
    for tool in tools {
        if !have(tool) {
            continue;
        }
        let mut cmd = Command::new(tool);
        match (tool, kind) {
            ("zenity", Kind::Info) => {
                cmd.args(["--info", "--no-markup", "--width=560", "--title", title, "--text", text])
            }
            ("zenity", Kind::Error) => cmd.args(["--error", "--no-markup", "--title", title, "--text", text]),
            ("kdialog", Kind::Info) => cmd.args(["--title", title, "--msgbox", text]),
            ("kdialog", Kind::Error) => cmd.args(["--title", title, "--error", text]),
            ("xmessage", _) => cmd.args(["-center", "-title", title, text]),
            _ => cmd.args(["--app-name=galleryfs", title, text]),
        };
        if cmd.status().is_ok() {
            return;
        }
    }
    eprintln!("{title}: {text}");
}

/// A passing notification: notify-send, else kdialog's passive popup; nothing where neither is installed.
fn notify(title: &str, text: &str) {
    if have("notify-send") {
        let _ = Command::new("notify-send")
            .args(["--app-name=galleryfs", "--icon=galleryfs-pinned", title, text])
            .status();
    } else if have("kdialog") {
        let _ = Command::new("kdialog")
            .args(["--title", title, "--passivepopup", text, "5"])
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<actions>\n<action>\n\t<icon>utilities-terminal</icon>\n\t<name>Open Terminal Here</name>\n\t<unique-id>1700000000000001-1</unique-id>\n\t<command>exo-open --working-directory %f --launch TerminalEmulator</command>\n\t<description>Example for a custom action &amp; more</description>\n\t<patterns>*</patterns>\n\t<startup-notify/>\n\t<directories/>\n</action>\n</actions>\n";

    #[test]
    fn thunar_merge_keeps_the_users_actions_and_uninstall_restores_the_file() {
        let ours = thunar_actions("/opt/my apps/galleryfs");
        let installed = merge_uca(USERS, Some(&ours)).unwrap();
        assert!(installed.contains("Open Terminal Here"), "{installed}");
        assert!(installed.contains("&amp; more"), "{installed}");
        assert_eq!(installed.matches("<unique-id>galleryfs-").count(), 3, "{installed}");
        assert!(
            installed.contains("<command>'/opt/my apps/galleryfs' desktop run pin %F</command>"),
            "{installed}"
        );
        // Installing twice does not duplicate, and uninstall gives back exactly what the user had.
        let again = merge_uca(&installed, Some(&ours)).unwrap();
        assert_eq!(again, installed);
        assert_eq!(merge_uca(&installed, None).unwrap(), USERS);
    }

    #[test]
    fn thunar_merge_into_an_empty_root_and_refuses_what_is_not_an_actions_file() {
        let out = merge_uca(
            "<?xml version=\"1.0\"?>\n<actions/>\n",
            Some(&thunar_actions("/usr/bin/galleryfs")),
        )
        .unwrap();
        assert_eq!(out.matches("<unique-id>galleryfs-").count(), 3, "{out}");
        assert!(merge_uca("no xml here", None).is_err());
    }

    #[test]
    fn status_is_told_in_the_menus_words() {
        let lines = "{\"path\":\"/g/DCIM/a.jpg\",\"id\":\"X!1\",\"state\":\"pinned\",\"size\":17233603,\"cached_bytes\":17233603}\n\
                     {\"path\":\"/g/DCIM\",\"id\":\"X!2\",\"state\":\"folder\",\"size\":0,\"cached_bytes\":0}";
        assert_eq!(
            describe_status(lines),
            "a.jpg: always kept on this device; 16.4 MiB of 16.4 MiB on this device\nDCIM: a folder"
        );
        assert_eq!(bytes(512), "512 bytes");
    }

    #[test]
    fn quoting_for_exec_keys_and_shells() {
        assert_eq!(exec_quote("/a b/gal$fs%"), r#""/a b/gal\$fs%%""#);
        assert_eq!(shell_quote("/it's/galleryfs"), r"'/it'\''s/galleryfs'");
        let menu = dolphin_service_menu("/usr/bin/galleryfs");
        assert!(
            menu.contains("Exec=\"/usr/bin/galleryfs\" desktop run free %F"),
            "{menu}"
        );
        assert!(
            menu.contains("Actions=galleryfs_keep;galleryfs_free;galleryfs_status;"),
            "{menu}"
        );
        let py = nautilus_extension("/usr/bin/galleryfs");
        assert!(py.contains("GALLERYFS = \"/usr/bin/galleryfs\""), "{py}");
    }
}
