//! The daemon's readiness handshake: the one line it prints on stdout once it listens,
//! `DATACAT_DAEMON_READY <port> <token>`. Whoever starts a daemon reads the port to call it
//! on and the token every call must carry (`Authorization: Bearer <token>`).

/// The first word of the line.
pub const READY_PREFIX: &str = "DATACAT_DAEMON_READY";

/// What the line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub port: u16,
    /// Absent from a daemon older than tokens.
    pub token: Option<String>,
}

impl Ready {
    /// The line a daemon prints.
    pub fn line(port: u16, token: &str) -> String {
        format!("{READY_PREFIX} {port} {token}")
    }

    /// Reads a ready line; `None` if `line` is not one.
    pub fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        if words.next()? != READY_PREFIX {
            return None;
        }
        let port = words.next()?.parse().ok().filter(|port| *port > 0)?;
        let token = words.next().map(str::to_string);
        words.next().is_none().then_some(Self { port, token })
    }

    /// The header value every call carries.
    pub fn authorization(&self) -> Option<String> {
        self.token.as_ref().map(|token| format!("Bearer {token}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_reads_back() {
        let ready = Ready::parse(&Ready::line(4242, "abc")).unwrap();
        assert_eq!((ready.port, ready.token.as_deref()), (4242, Some("abc")));
        assert_eq!(ready.authorization().unwrap(), "Bearer abc");
        assert_eq!(Ready::parse("DATACAT_DAEMON_READY 7").unwrap().token, None);
        for bad in [
            "",
            "hello",
            "DATACAT_DAEMON_READY",
            "DATACAT_DAEMON_READY x t",
            "DATACAT_DAEMON_READY 0 t",
            "DATACAT_DAEMON_READY 1 t extra",
        ] {
            assert_eq!(Ready::parse(bad), None, "{bad}");
        }
    }
}
