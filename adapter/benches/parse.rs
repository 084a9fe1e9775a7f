//! Parsing throughput per format, on lines shaped like production logs. Each benchmark
//! first checks that its lines really come out structured with the expected fields, so a
//! parser that silently started failing (and so got "faster") fails the bench instead.

use std::hint::black_box;

use adapter::input::pump;
use adapter::parse::{Format, Outcome, Parser, ParserConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

struct Case {
    name: &'static str,
    format: Format,
    pattern: Option<&'static str>,
    lines: &'static [&'static str],
    /// A field every line's record must have.
    field: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "apache_combined",
        format: Format::ApacheCombined,
        pattern: None,
        lines: &[
            r#"112.214.35.62 - - [18/Jul/2024:01:52:36 +0000] "GET /index.html HTTP/1.1" 500 164477 "https://www.google.com/search?q=x" "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1""#,
            r#"2001:db8::52e7 - alice [21/Jan/2024:02:52:34 +0000] "POST /api/v1/users/51751 HTTP/1.1" 404 15204 "-" "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36""#,
            r#"10.1.2.3 - - [01/Feb/2024:23:59:59 -0500] "HEAD /favicon.ico HTTP/1.1" 304 - "-" "curl/8.4.0""#,
        ],
        field: "status",
    },
    Case {
        name: "syslog_rfc5424",
        format: Format::Syslog,
        pattern: None,
        lines: &[
            r#"<89>1 2024-11-18T12:28:48.824Z LabSZ sshd 24200 ID0 [origin@32473 ip="10.0.0.0" software="adapter-bench"] reverse mapping checking getaddrinfo for ns.marryaldkfaczcz.com [173.234.31.186] failed - POSSIBLE BREAK-IN ATTEMPT!"#,
            "<52>1 2024-03-14T10:25:02.098Z LabSZ sshd 24200 ID1 - Invalid user webmaster from 173.234.31.186",
        ],
        field: "version",
    },
    Case {
        name: "syslog_rfc3164",
        format: Format::Syslog,
        pattern: None,
        lines: &[
            "Dec 10 06:55:46 LabSZ sshd[24200]: reverse mapping checking getaddrinfo for ns.marryaldkfaczcz.com [173.234.31.186] failed - POSSIBLE BREAK-IN ATTEMPT!",
            "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4",
        ],
        field: "appname",
    },
    Case {
        name: "nginx_combined",
        format: Format::NginxCombined,
        pattern: None,
        lines: &[
            r#"172.17.0.1 - alice [01/Apr/2021:12:02:31 +0000] "POST /not-found HTTP/1.1" 404 153 "http://localhost/somewhere" "Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/72.0.3626.119 Safari/537.36" "2.75""#,
            r#"2001:db8::7 - - [01/Apr/2021:12:02:31 +0000] "GET / HTTP/1.1" 200 612 "-" "curl/8.4.0""#,
        ],
        field: "status",
    },
    Case {
        name: "klog",
        format: Format::Klog,
        pattern: None,
        lines: &[
            "I0505 17:59:40.692994   28133 reflector.go:255] Listing and watching *v1.Pod from k8s.io/client-go/informers/factory.go:134",
            "E0505 17:59:41.000001       7 controller.go:114] error syncing 'default/web': deployment not found, requeuing",
        ],
        field: "line",
    },
    Case {
        name: "json",
        format: Format::Json,
        pattern: None,
        lines: &[
            r#"{"ts":"2024-01-15T10:23:45.123Z","level":"info","msg":"request done","http":{"method":"GET","path":"/api/v1/users","status":200},"took_ms":12.5}"#,
        ],
        field: "http",
    },
    Case {
        name: "cef",
        format: Format::Cef,
        pattern: None,
        lines: &[
            "CEF:0|Security|threatmanager|1.0|100|worm successfully stopped|10|src=10.0.0.1 dst=2.1.2.2 spt=1232 msg=Detected a threat. No action needed",
        ],
        field: "src",
    },
    Case {
        name: "logfmt",
        format: Format::Logfmt,
        pattern: None,
        lines: &[
            r#"ts=2024-01-15T10:23:45.123Z level=info msg="request done" method=GET path=/api/v1/users status=200 took=12ms"#,
        ],
        field: "msg",
    },
    Case {
        name: "log4j",
        format: Format::Log4j,
        pattern: None,
        lines: &[
            "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - Notification time out: 3200",
        ],
        field: "thread",
    },
    Case {
        name: "grok_hdfs",
        format: Format::Grok,
        pattern: Some("%{HDFS}"),
        lines: &[
            "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating",
        ],
        field: "component",
    },
    Case {
        name: "auto_rfc3164",
        format: Format::Auto,
        pattern: None,
        lines: &["Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186"],
        field: "appname",
    },
];

fn parser(case: &Case) -> Parser {
    let mut config = ParserConfig::new(case.format);
    config.pattern = case.pattern.map(str::to_owned);
    config.today = Some((2024, 12, 31));
    Parser::new(config).expect("bench config is valid")
}

/// A few thousand lines of the case, newline-terminated.
fn input(case: &Case) -> Vec<u8> {
    let mut input = Vec::new();
    while input.len() < 1 << 20 {
        for line in case.lines {
            input.extend_from_slice(line.as_bytes());
            input.push(b'\n');
        }
    }
    input
}

fn assert_structured(case: &Case) {
    let mut p = parser(case);
    for line in case.lines {
        let mut out = Vec::new();
        assert_eq!(
            p.parse_line(line.as_bytes(), &mut out),
            Outcome::Structured,
            "{}: {}",
            case.name,
            String::from_utf8_lossy(&out)
        );
        let record: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert!(
            record.get(case.field).is_some(),
            "{}: no `{}` in {record}",
            case.name,
            case.field
        );
    }
}

fn formats(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for case in CASES {
        assert_structured(case);
        let input = input(case);
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(case.name, |b| {
            let mut p = parser(case);
            let mut sink = Vec::with_capacity(input.len() * 2);
            b.iter(|| {
                sink.clear();
                let totals =
                    pump(black_box(&input[..]), &mut p, &mut sink).expect("in-memory pump");
                assert_eq!(
                    totals.structured, totals.lines,
                    "{}: a line failed",
                    case.name
                );
                black_box(sink.len())
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = formats
}
criterion_main!(benches);
