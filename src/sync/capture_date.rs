//! The capture date of a photo or video, as the Timeline and `user.galleryfs.taken` use it: OneDrive's
//! `photo.takenDateTime`, else the date in a camera's file name (`20240315_142233.jpg`,
//! `Screenshot_20240316-101500_Gallery.jpg`, `20230203_123826234_iOS.heic`, `VID_20240101_101010.mp4`,
//! `IMG-20240101-WA0001.jpg`; read in the local time zone, as the phone wrote it), else
//! `fileSystemInfo.createdDateTime`, else the modification time.

use crate::store::MediaFacet;
use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// Years a camera file name may carry (anything else is a number, not a date).
const YEARS: std::ops::RangeInclusive<i32> = 1990..=2100;

/// The capture date of a media file named `name` with the recorded facets (`mtime`: the last resort).
pub fn capture_date(name: &str, facet: Option<&MediaFacet>, mtime: i64) -> DateTime<Utc> {
    let from_secs = |s: i64| DateTime::<Utc>::from_timestamp(s, 0);
    facet
        .and_then(|f| f.taken)
        .and_then(from_secs)
        .or_else(|| {
            date_in_name(name)
                .and_then(|n| Local.from_local_datetime(&n).earliest())
                .map(|t| t.with_timezone(&Utc))
        })
        .or_else(|| facet.and_then(|f| f.created).and_then(from_secs))
        .or_else(|| from_secs(mtime))
        .unwrap_or_default()
}

/// RFC 3339, whole seconds, UTC (`2024-03-15T14:22:33Z`).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The date (and time, when it follows) a camera or app wrote into a file name: the first run of 8 digits that is
/// a valid `YYYYMMDD`, optionally followed by `_` or `-` and at least 6 digits `HHMMSS` (milliseconds after them
/// are ignored).
pub fn date_in_name(name: &str) -> Option<NaiveDateTime> {
    let b = name.as_bytes();
    let digits_at = |i: usize, n: usize| i + n <= b.len() && b[i..i + n].iter().all(u8::is_ascii_digit);
    let num = |i: usize, n: usize| -> u32 { name[i..i + n].parse().unwrap_or(u32::MAX) };
    let mut i = 0;
    while i < b.len() {
        let run_start = i == 0 || !b[i - 1].is_ascii_digit();
        if run_start && digits_at(i, 8) && !digits_at(i + 8, 1) {
            let (y, m, d) = (num(i, 4) as i32, num(i + 4, 2), num(i + 6, 2));
            if let Some(date) = NaiveDate::from_ymd_opt(y, m, d).filter(|_| YEARS.contains(&y)) {
                let t = i + 9;
                let time = (i + 8 < b.len() && matches!(b[i + 8], b'_' | b'-') && digits_at(t, 6))
                    .then(|| NaiveTime::from_hms_opt(num(t, 2), num(t + 2, 2), num(t + 4, 2)))
                    .flatten()
                    .unwrap_or(NaiveTime::MIN);
                return Some(date.and_time(time));
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn camera_names_carry_their_date() {
        for (name, want) in [
            ("20240315_142233.jpg", "2024-03-15 14:22:33"),
            ("Screenshot_20240316-101500_Gallery.jpg", "2024-03-16 10:15:00"),
            ("20230203_123826234_iOS.heic", "2023-02-03 12:38:26"),
            ("VID_20240101_101010.mp4", "2024-01-01 10:10:10"),
            ("IMG_20221231_235959_001.jpg", "2022-12-31 23:59:59"),
            ("IMG-20240101-WA0001.jpg", "2024-01-01 00:00:00"),
            ("PXL_20231105_081500123.MP.jpg", "2023-11-05 08:15:00"),
        ] {
            assert_eq!(date_in_name(name), Some(dt(want)), "{name}");
        }
        for name in [
            "IMG_1234.jpg",
            "123456789012.jpg",
            "20241345_101010.jpg",
            "photo.png",
            "18991231.jpg",
        ] {
            assert_eq!(date_in_name(name), None, "{name}");
        }
    }

    #[test]
    fn taken_then_name_then_created() {
        let facet = |taken, created| MediaFacet {
            taken,
            created,
            ..Default::default()
        };
        let t = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
        assert_eq!(
            capture_date("20240315_142233.jpg", Some(&facet(Some(5), Some(9))), 1),
            t(5)
        );
        let by_name = capture_date("20240315_142233.jpg", Some(&facet(None, Some(9))), 1);
        assert_eq!(by_name.with_timezone(&Local).naive_local(), dt("2024-03-15 14:22:33"));
        assert_eq!(capture_date("IMG_1.jpg", Some(&facet(None, Some(9))), 1), t(9));
        assert_eq!(capture_date("IMG_1.jpg", None, 1), t(1));
        assert_eq!(rfc3339(t(1_710_512_553)), "2024-03-15T14:22:33Z");
    }
}
