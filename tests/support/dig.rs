//! `dig` (from dnsutils) as the DNS client of the tests: runs it and reads its answer.

#![allow(dead_code)] // each test binary uses a different part of the helpers

use std::process::Command;

/// Why `dig` cannot be used here, or `None` when it can.
pub fn unavailable() -> Option<String> {
    match Command::new("dig").arg("-v").output() {
        Ok(_) => None,
        Err(e) => Some(format!("`dig` (dnsutils) cannot run: {e}")),
    }
}

/// One resource record of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr {
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

/// What `dig` printed, read.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// `NOERROR`, `NXDOMAIN`, ...; empty when no answer came.
    pub status: String,
    /// The header flags (`qr aa rd ra`).
    pub flags: Vec<String>,
    pub answers: Vec<Rr>,
    pub authority: Vec<Rr>,
    pub text: String,
}

impl Reply {
    /// The data of the answers of type `rtype`.
    pub fn data(&self, rtype: &str) -> Vec<String> {
        self.answers
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect()
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// Runs `command` (a `dig` invocation), with one try and a 3 s timeout unless it sets its own,
/// and reads its output.
pub fn run(mut command: Command) -> Reply {
    let given = |option: &str| {
        command
            .get_args()
            .any(|a| a.to_string_lossy().starts_with(option))
    };
    let defaults: Vec<&str> = [("+tries=", "+tries=1"), ("+time=", "+time=3")]
        .into_iter()
        .filter(|(option, _)| !given(option))
        .map(|(_, default)| default)
        .collect();
    let out = command.args(defaults).output().expect("dig runs");
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// `dig @server -p port args...` on this machine.
pub fn query(server: &str, port: u16, args: &[&str]) -> Reply {
    let mut command = Command::new("dig");
    command
        .arg(format!("@{server}"))
        .args(["-p", &port.to_string()])
        .args(args);
    run(command)
}

/// Reads dig's default output.
pub fn parse(text: &str) -> Reply {
    let mut reply = Reply {
        text: text.to_string(),
        ..Reply::default()
    };
    let mut section = "";
    for line in text.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            reply.status = rest.split(',').next().unwrap_or_default().to_string();
        }
        if let Some(rest) = line.strip_prefix(";; flags: ") {
            let flags = rest.split(';').next().unwrap_or_default();
            reply.flags = flags.split_whitespace().map(str::to_string).collect();
        }
        if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
            continue;
        }
        if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
            continue;
        }
        if line.trim().is_empty() || line.starts_with(';') {
            section = "";
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 {
            continue;
        }
        let rr = Rr {
            name: fields[0].to_string(),
            ttl: fields[1].parse().unwrap_or_default(),
            rtype: fields[3].to_string(),
            data: fields[4..].join(" "),
        };
        match section {
            "answer" => reply.answers.push(rr),
            "authority" => reply.authority.push(rr),
            _ => {}
        }
    }
    reply
}
