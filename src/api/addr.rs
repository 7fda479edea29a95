//! Where the local API listens: a unix socket path or a TCP address. Shared by the daemon that
//! binds it, the CLI clients that dial it, and the configuration that parses it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// The local API's address: `unix:///run/weft/weft.sock` or `127.0.0.1:8080`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl FromStr for ApiAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "{s:?} is not a unix socket address: the path after unix:// must be absolute (unix:///run/weft/weft.sock)"
                ));
            }
            return Ok(ApiAddr::Unix(PathBuf::from(path)));
        }
        let tcp = s.strip_prefix("tcp://").unwrap_or(s);
        tcp.parse().map(ApiAddr::Tcp).map_err(|_| {
            format!("{s:?} is neither unix:///absolute/path nor host:port such as 127.0.0.1:8080")
        })
    }
}

impl fmt::Display for ApiAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiAddr::Unix(path) => write!(f, "unix://{}", path.display()),
            ApiAddr::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_and_tcp_forms_parse_and_print_back() {
        for text in ["unix:///run/weft/weft.sock", "127.0.0.1:8080", "[::1]:9000"] {
            assert_eq!(text.parse::<ApiAddr>().unwrap().to_string(), text);
        }
        assert_eq!(
            "tcp://127.0.0.1:1".parse::<ApiAddr>().unwrap(),
            ApiAddr::Tcp("127.0.0.1:1".parse().unwrap())
        );
    }

    #[test]
    fn relative_socket_paths_and_bare_hosts_are_refused() {
        assert!("unix://weft.sock".parse::<ApiAddr>().is_err());
        assert!("localhost".parse::<ApiAddr>().is_err());
    }
}
