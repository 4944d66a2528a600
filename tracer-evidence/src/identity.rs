//! Which run a bundle came from: the machine, the kernel, tracer, when, the command and how it
//! ended, and the test, as report.json saves it (`identity`, added in schema 3: older reports
//! have none, and every field may be missing in a report another tool edited).

use serde::{Deserialize, Serialize};

/// The run that wrote a bundle. Times are UTC, as RFC 3339 (`2026-05-20T07:31:02Z`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Identity {
    /// The host name (uname's nodename).
    pub host: Option<String>,
    /// /etc/machine-id: tells machines apart whose host names are the same.
    pub machine_id: Option<String>,
    /// The kernel release (uname -r).
    pub kernel: Option<String>,
    pub tracer_version: Option<String>,
    pub started: Option<String>,
    pub ended: Option<String>,
    /// tracer's own command line.
    pub command: Vec<String>,
    /// tracer's exit status: the verdict's exit code for diagnose, the command's for watch.
    pub exit_status: Option<i32>,
    /// The test that ran, when a tag file or the environment named it (SPDK's run_test).
    pub test: Option<String>,
}

impl Identity {
    /// The identity saved in a report.json's value, if it has one that reads.
    pub fn from_report(report: &serde_json::Value) -> Option<Self> {
        serde_json::from_value(report.get("identity")?.clone()).ok()
    }

    /// The facts as (name, value) rows, missing ones named as missing.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let or_missing =
            |value: &Option<String>| value.clone().unwrap_or_else(|| "not recorded".to_owned());
        vec![
            ("host", or_missing(&self.host)),
            ("machine id", or_missing(&self.machine_id)),
            ("kernel", or_missing(&self.kernel)),
            ("tracer", or_missing(&self.tracer_version)),
            ("started (UTC)", or_missing(&self.started)),
            ("ended (UTC)", or_missing(&self.ended)),
            (
                "command",
                if self.command.is_empty() {
                    "not recorded".to_owned()
                } else {
                    self.command.join(" ")
                },
            ),
            (
                "exit status",
                self.exit_status
                    .map_or_else(|| "not recorded".to_owned(), |code| code.to_string()),
            ),
            (
                "test",
                self.test.clone().unwrap_or_else(|| "not named".to_owned()),
            ),
        ]
    }
}

/// Seconds since the Unix epoch as RFC 3339 UTC, to the second.
pub fn utc_rfc3339(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let rest = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc_rfc3339(0), "1970-01-01T00:00:00Z");
        // A leap day, and the last second of a year.
        assert_eq!(utc_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(utc_rfc3339(1_779_262_262), "2026-05-20T07:31:02Z");
    }

    #[test]
    fn missing_fields_read_and_are_named_missing() {
        let report = serde_json::json!({ "identity": { "host": "node19" } });
        let identity = Identity::from_report(&report).unwrap();
        assert_eq!(identity.host.as_deref(), Some("node19"));
        let rows = identity.rows();
        assert!(rows.contains(&("kernel", "not recorded".to_owned())));
        assert!(Identity::from_report(&serde_json::json!({})).is_none());
    }
}
