//! Linux authorization logs (`/var/log/auth.log`, `/var/log/secure`): syslog lines from
//! sshd, sudo, PAM and friends. Vector's `parse_linux_authorization` is `parse_syslog`
//! under another name, and so is this format, so records keep the same fields whichever
//! name a pipeline uses.

use super::syntax::Failure;
use super::syslog;
use super::timestamp::TimeContext;
use crate::record::Record;

/// The `linux_authorization` format.
pub fn parse(line: &str, time: &mut TimeContext, rec: &mut Record<'_>) -> Result<(), Failure> {
    syslog::parse(line, time, rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::testing::render;
    use serde_json::json;

    #[test]
    fn vector_documented_example() {
        let line = "Mar 23 01:49:58 localhost sshd[1111]: Accepted publickey for eng from 10.1.1.1 port 8888 ssh2: RSA SHA256:foobar";
        assert_eq!(
            render(|rec, time| parse(line, time, rec)),
            json!({
                "appname": "sshd",
                "hostname": "localhost",
                "message": "Accepted publickey for eng from 10.1.1.1 port 8888 ssh2: RSA SHA256:foobar",
                "procid": 1111,
                "timestamp": "2024-03-23T01:49:58Z"
            })
        );
    }

    #[test]
    fn openssh_lines() {
        let line =
            "Dec 10 06:55:46 LabSZ sshd[24200]: pam_unix(sshd:auth): check pass; user unknown";
        let got = render(|rec, time| parse(line, time, rec));
        assert_eq!(got["appname"], "sshd");
        assert_eq!(
            got["message"],
            "pam_unix(sshd:auth): check pass; user unknown"
        );
        assert_eq!(got["timestamp"], "2023-12-10T06:55:46Z");
    }
}
