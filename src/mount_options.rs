//! Mount options (`-o a,b=c`) of the contract: the standard ones, galleryfs' own, and those accepted and ignored
//! as fstab and systemd expect. Unknown options are a usage error naming the option.

use std::time::Duration;
use thiserror::Error;

/// Default byte budget of cached originals (pinned and not-yet-uploaded files are not counted).
pub const DEFAULT_CACHE_SIZE: u64 = 10 * 1024 * 1024 * 1024;
/// Deletes allowed within a minute before further deletes wait for confirmation.
pub const DEFAULT_DELETE_GUARD: usize = 50;

#[derive(Clone, Debug, PartialEq)]
pub struct MountOptions {
    pub read_only: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    pub default_permissions: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub umask: Option<u32>,
    pub noatime: bool,
    pub dev: bool,
    pub suid: bool,
    pub exec: bool,
    pub fsname: Option<String>,
    pub account: Option<String>,
    pub folder: Option<String>,
    pub cache_size: u64,
    pub poll_interval: Duration,
    pub write_back: Duration,
    pub thumbnails: bool,
    /// `camera_roll=on|off`: show the drive's Camera Roll as one more folder at the root (default on).
    pub camera_roll: bool,
    /// `timeline=on|off`: the `Timeline` folder at the root.
    pub timeline: bool,
    /// More deletes than this within a minute are held until confirmed (`galleryfs trash confirm-deletes`).
    pub delete_guard: usize,
    /// Options accepted for fstab/systemd and ignored (kept to log them once).
    pub ignored: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            read_only: false,
            allow_other: false,
            allow_root: false,
            default_permissions: false,
            uid: None,
            gid: None,
            umask: None,
            noatime: false,
            dev: false,
            suid: false,
            exec: true,
            fsname: None,
            account: None,
            folder: None,
            cache_size: DEFAULT_CACHE_SIZE,
            poll_interval: Duration::from_secs(30),
            write_back: Duration::from_secs(2),
            thumbnails: true,
            camera_roll: true,
            timeline: true,
            delete_guard: DEFAULT_DELETE_GUARD,
            ignored: Vec::new(),
        }
    }
}

/// Every option `-o` takes, one line each: the form and what it does (`galleryfs mount --help` and the message
/// for an unknown option list them).
pub const OPTION_HELP: &[(&str, &str)] = &[
    ("ro, rw", "read-only or read-write (default rw)"),
    (
        "allow_other, allow_root",
        "let other users (or root) use the mount; it is private to you otherwise",
    ),
    ("default_permissions", "let the kernel check permissions from the modes"),
    ("uid=N, gid=N", "owner of every file (chown succeeds without effect)"),
    (
        "umask=OCTAL",
        "modes of every file, e.g. umask=027 (default 022; chmod succeeds without effect)",
    ),
    ("noatime, atime", "as for any filesystem"),
    (
        "dev, nodev, suid, nosuid",
        "as for any filesystem (default nodev, nosuid)",
    ),
    ("exec, noexec", "as for any filesystem (default exec)"),
    (
        "fsname=NAME",
        "the name df and /proc/mounts show (default galleryfs:ACCOUNT)",
    ),
    (
        "account=NAME",
        "the account to mount (default: --account, else default)",
    ),
    (
        "folder=PATH",
        "the gallery folder, a path from the drive root (default: Samsung Gallery in Pictures)",
    ),
    (
        "cache_size=SIZE",
        "budget of cached originals, binary units: 512M, 20G (default 10G)",
    ),
    (
        "poll_interval=SECONDS",
        "how often OneDrive is asked for changes (default 30)",
    ),
    (
        "write_back=SECONDS",
        "delay after the last close before an upload starts (default 2)",
    ),
    ("thumbnails=on|off", "pre-seed thumbnails (default on)"),
    (
        "camera_roll=on|off",
        "show OneDrive's Camera Roll (Camera Backup's folder) at the root (default on)",
    ),
    (
        "timeline=on|off",
        "the Timeline folder at the root: every photo and video by month taken (default on)",
    ),
    (
        "delete_guard=N",
        "more deletes than N within a minute wait for `galleryfs trash confirm-deletes` (default 50)",
    ),
    (
        "_netdev, user, users, nouser, auto, noauto, nofail, defaults, x-*, comment=*",
        "accepted and ignored, as fstab and systemd expect",
    ),
];

/// The option names, for the message about an unknown one.
fn option_names() -> String {
    OPTION_HELP
        .iter()
        .map(|(forms, _)| *forms)
        .collect::<Vec<_>>()
        .join(", ")
}

/// [`OPTION_HELP`] as an aligned list, one option a line.
pub fn options_help() -> String {
    let width = OPTION_HELP
        .iter()
        .map(|(f, _)| f.len())
        .filter(|w| *w < 32)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (forms, what) in OPTION_HELP {
        if forms.len() > width {
            out.push_str(&format!("  {forms}\n  {:width$}  {what}\n", ""));
        } else {
            out.push_str(&format!("  {forms:width$}  {what}\n"));
        }
    }
    out
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum OptionError {
    #[error("unknown mount option {0:?}; valid options: {names}", names = option_names())]
    Unknown(String),
    #[error("mount option {name}: {reason}")]
    BadValue { name: String, reason: String },
}

fn bad(name: &str, reason: impl Into<String>) -> OptionError {
    OptionError::BadValue {
        name: name.into(),
        reason: reason.into(),
    }
}

/// Parses a size with binary units: `512M`, `20G` (= 20 GiB), `1T`, `64K`, `123` bytes; `MiB`/`GiB` also read.
pub fn parse_size(raw: &str) -> Result<u64, String> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{raw:?} is not a size like 512M or 20G"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return Err(format!("{raw:?}: unknown unit {unit:?} (use K, M, G or T)")),
    };
    if !n.is_finite() || n < 0.0 {
        return Err(format!("{raw:?} is not a size"));
    }
    Ok((n * mult as f64) as u64)
}

fn parse_secs(name: &str, v: &str) -> Result<Duration, OptionError> {
    v.trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| bad(name, format!("{v:?} is not a whole number of seconds")))
}

fn parse_id(name: &str, v: &str) -> Result<u32, OptionError> {
    v.trim()
        .parse::<u32>()
        .map_err(|_| bad(name, format!("{v:?} is not a numeric id")))
}

impl MountOptions {
    /// Parses every `-o` argument (each a comma-separated list) on top of the defaults.
    pub fn parse<S: AsRef<str>>(lists: &[S]) -> Result<Self, OptionError> {
        let mut o = Self::default();
        for list in lists {
            for opt in list.as_ref().split(',').map(str::trim).filter(|s| !s.is_empty()) {
                o.apply(opt)?;
            }
        }
        Ok(o)
    }

    fn apply(&mut self, opt: &str) -> Result<(), OptionError> {
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (opt, None),
        };
        fn need<'a>(name: &str, v: Option<&'a str>) -> Result<&'a str, OptionError> {
            v.ok_or_else(|| bad(name, "needs a value"))
        }
        match name {
            "ro" => self.read_only = true,
            "rw" => self.read_only = false,
            "allow_other" => self.allow_other = true,
            "allow_root" => self.allow_root = true,
            "default_permissions" => self.default_permissions = true,
            "uid" => self.uid = Some(parse_id(name, need(name, value)?)?),
            "gid" => self.gid = Some(parse_id(name, need(name, value)?)?),
            "umask" => {
                let v = need(name, value)?;
                let m = u32::from_str_radix(v.trim(), 8).map_err(|_| bad(name, format!("{v:?} is not octal")))?;
                if m > 0o777 {
                    return Err(bad(name, format!("{v:?} is larger than 0777")));
                }
                self.umask = Some(m);
            }
            "noatime" => self.noatime = true,
            "atime" | "relatime" | "strictatime" => self.noatime = false,
            "dev" => self.dev = true,
            "nodev" => self.dev = false,
            "suid" => self.suid = true,
            "nosuid" => self.suid = false,
            "exec" => self.exec = true,
            "noexec" => self.exec = false,
            "fsname" => self.fsname = Some(need(name, value)?.to_string()),
            "account" => self.account = Some(need(name, value)?.to_string()),
            "folder" => self.folder = Some(need(name, value)?.to_string()),
            "cache_size" => self.cache_size = parse_size(need(name, value)?).map_err(|r| bad(name, r))?,
            "poll_interval" => {
                let d = parse_secs(name, need(name, value)?)?;
                if d.is_zero() {
                    return Err(bad(name, "must be at least 1 second"));
                }
                self.poll_interval = d;
            }
            "write_back" => self.write_back = parse_secs(name, need(name, value)?)?,
            "delete_guard" => {
                let v = need(name, value)?;
                self.delete_guard = v
                    .trim()
                    .parse()
                    .map_err(|_| bad(name, format!("{v:?} is not a number of deletes")))?;
            }
            "thumbnails" => {
                self.thumbnails = match need(name, value)? {
                    "on" | "yes" | "true" | "1" => true,
                    "off" | "no" | "false" | "0" => false,
                    v => return Err(bad(name, format!("{v:?}: use on or off"))),
                }
            }
            "camera_roll" => {
                self.camera_roll = match need(name, value)? {
                    "on" | "yes" | "true" | "1" => true,
                    "off" | "no" | "false" | "0" => false,
                    v => return Err(bad(name, format!("{v:?}: use on or off"))),
                }
            }
            "timeline" => {
                self.timeline = match need(name, value)? {
                    "on" | "yes" | "true" | "1" => true,
                    "off" | "no" | "false" | "0" => false,
                    v => return Err(bad(name, format!("{v:?}: use on or off"))),
                }
            }
            "_netdev" | "user" | "users" | "nouser" | "noauto" | "auto" | "nofail" | "defaults" => {
                self.ignored.push(opt.to_string())
            }
            n if n.starts_with("x-systemd.") || n.starts_with("x-") || n == "comment" => {
                self.ignored.push(opt.to_string())
            }
            _ => return Err(OptionError::Unknown(opt.to_string())),
        }
        Ok(())
    }

    /// Permission bits of files and directories after `umask` (default 022).
    pub fn file_perm(&self) -> u16 {
        (0o666 & !self.umask.unwrap_or(0o022)) as u16
    }
    pub fn dir_perm(&self) -> u16 {
        (0o777 & !self.umask.unwrap_or(0o022)) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary() {
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("20G").unwrap(), 20 << 30);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12X").is_err());
        assert!(parse_size("G").is_err());
    }

    #[test]
    fn fstab_line_options() {
        let o = MountOptions::parse(&[
            "rw,_netdev,noauto,user,x-systemd.automount,x-systemd.idle-timeout=60,comment=x,nofail,defaults",
            "allow_other,uid=1000,gid=100,umask=027,cache_size=20G,poll_interval=10,write_back=0,thumbnails=off",
            "delete_guard=500",
            "account=work,folder=/Pictures/Samsung Gallery,fsname=galleryfs:work,noatime,nodev,nosuid,noexec",
        ])
        .unwrap();
        assert!(o.allow_other && !o.read_only && o.noatime && !o.exec && !o.thumbnails);
        assert_eq!((o.uid, o.gid, o.umask), (Some(1000), Some(100), Some(0o027)));
        assert_eq!(o.cache_size, 20 << 30);
        assert_eq!(o.poll_interval, Duration::from_secs(10));
        assert_eq!(o.write_back, Duration::ZERO);
        assert_eq!(o.delete_guard, 500);
        assert_eq!(o.folder.as_deref(), Some("/Pictures/Samsung Gallery"));
        assert_eq!(o.account.as_deref(), Some("work"));
        assert_eq!(o.file_perm(), 0o640);
        assert_eq!(o.dir_perm(), 0o750);
        assert_eq!(o.ignored.len(), 8);
    }

    #[test]
    fn bad_options_are_named() {
        assert_eq!(
            MountOptions::parse(&["rw,bogus"]),
            Err(OptionError::Unknown("bogus".into()))
        );
        let message = OptionError::Unknown("bogus".into()).to_string();
        assert!(
            message.starts_with("unknown mount option \"bogus\"; valid options: ro, rw,")
                && message.contains("cache_size=SIZE"),
            "{message}"
        );
        assert!(matches!(
            MountOptions::parse(&["uid=abc"]),
            Err(OptionError::BadValue { .. })
        ));
        assert!(matches!(
            MountOptions::parse(&["umask=999"]),
            Err(OptionError::BadValue { .. })
        ));
        assert!(matches!(
            MountOptions::parse(&["poll_interval=0"]),
            Err(OptionError::BadValue { .. })
        ));
        assert!(matches!(
            MountOptions::parse(&["thumbnails=maybe"]),
            Err(OptionError::BadValue { .. })
        ));
    }
}
