//! Headless Chromium driven over the DevTools protocol, for the dashboard's browser test: the
//! browser runs inside a test namespace (it reaches nothing else), and this client talks to its
//! debugging port from a socket opened in that namespace. The WebSocket framing is the minimum
//! RFC 6455 needs for one client: masked text frames out, text and continuation frames in.

#![allow(dead_code)] // each test binary uses a different part of the helpers

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use serde_json::{Value, json};

/// Chromium's flags: headless, no sandbox (root), and nothing that reaches out on its own.
pub const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--safebrowsing-disable-auto-update",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
];

/// Why the browser test cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    match std::process::Command::new("chromium")
        .arg("--version")
        .output()
    {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`chromium --version` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Some(format!(
            "`chromium` cannot run ({e}); install Debian's chromium package"
        )),
    }
}

/// Connects to `addr` from inside network namespace `netns` (the socket stays in it).
pub fn connect_in(netns: &str, addr: &str) -> std::io::Result<TcpStream> {
    let path = format!("/run/netns/{netns}");
    let addr = addr.to_string();
    std::thread::spawn(move || {
        let ns = File::open(&path)?;
        // SAFETY: setns on this short-lived thread only; the fd is valid for the call.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::connect(&addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(stream)
    })
    .join()
    .expect("the namespace thread does not panic")
}

/// `GET path` over plain HTTP/1.1 to `addr` in `netns`: the body (Chromium's DevTools server
/// keeps the connection open, so the body is read by its `Content-Length`).
pub fn http_get(netns: &str, addr: &str, path: &str) -> std::io::Result<String> {
    let mut stream = connect_in(netns, addr)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n")?;
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("the answer ended in its headers"));
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().map_err(std::io::Error::other)?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    String::from_utf8(body).map_err(std::io::Error::other)
}

/// A DevTools session with one page.
pub struct Page {
    stream: TcpStream,
    next_id: u64,
}

impl Page {
    /// Attaches to the first page target of the browser debugging on `addr` in `netns`.
    pub fn attach(netns: &str, addr: &str) -> std::io::Result<Page> {
        let targets: Value = serde_json::from_str(&http_get(netns, addr, "/json/list")?)?;
        let url = targets
            .as_array()
            .and_then(|all| all.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .ok_or_else(|| std::io::Error::other(format!("no page target in {targets}")))?;
        let path = url
            .splitn(4, '/')
            .nth(3)
            .map(|p| format!("/{p}"))
            .ok_or_else(|| std::io::Error::other(format!("odd target URL {url}")))?;
        let mut stream = connect_in(netns, addr)?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: d2VmdC1kYXNoYm9hcmQtdGVzdA==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut status = String::new();
        reader.read_line(&mut status)?;
        if !status.contains(" 101 ") {
            return Err(std::io::Error::other(format!(
                "no WebSocket upgrade: {status}"
            )));
        }
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        if !reader.buffer().is_empty() {
            return Err(std::io::Error::other("data before the first frame"));
        }
        Ok(Page { stream, next_id: 1 })
    }

    /// Calls `method` with `params`; its `result`, or the protocol's error as an `Err`.
    pub fn call(&mut self, method: &str, params: Value) -> std::io::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({ "id": id, "method": method, "params": params }).to_string();
        self.send(message.as_bytes())?;
        loop {
            let reply: Value = serde_json::from_slice(&self.receive()?)?;
            if reply["id"] != id {
                continue; // an event
            }
            if let Some(error) = reply.get("error") {
                return Err(std::io::Error::other(format!("{method}: {error}")));
            }
            return Ok(reply["result"].clone());
        }
    }

    /// The value of JavaScript `expression` in the page (returned by value).
    pub fn eval(&mut self, expression: &str) -> std::io::Result<Value> {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        )?;
        Ok(result["result"]["value"].clone())
    }

    fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= u16::MAX as usize => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x5a, 0x17, 0xc3, 0x09];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame)
    }

    /// The next whole message (fragments joined; control frames skipped).
    fn receive(&mut self) -> std::io::Result<Vec<u8>> {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head)?;
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0f;
            let len = match head[1] & 0x7f {
                126 => {
                    let mut n = [0u8; 2];
                    self.stream.read_exact(&mut n)?;
                    u64::from(u16::from_be_bytes(n))
                }
                127 => {
                    let mut n = [0u8; 8];
                    self.stream.read_exact(&mut n)?;
                    u64::from_be_bytes(n)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload)?;
            match opcode {
                0x8 => return Err(std::io::Error::other("the browser closed the session")),
                0x9 | 0xa => continue,
                _ => message.extend_from_slice(&payload),
            }
            if fin {
                return Ok(message);
            }
        }
    }
}
