//! The one place that reads the wall clock and the operating system's random number
//! generator. Everything else receives `now` (Unix seconds) and random bytes as arguments,
//! so protocol code stays deterministic under test.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Seconds since the Unix epoch, from the system clock.
pub fn now() -> i64 {
    #[allow(clippy::disallowed_methods)] // this is the one allowed reader of the clock
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Milliseconds since the Unix epoch (for sub-second delays such as login throttling).
pub fn now_ms() -> i64 {
    #[allow(clippy::disallowed_methods)] // this is the one allowed reader of the clock
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `N` bytes from the OS CSPRNG (through aws-lc-rs).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // aws-lc-rs' SystemRandom cannot fail on Linux once the process has started; a failure
    // here would mean no entropy source at all, and continuing would be unsafe.
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut out).expect("the OS random number generator is unavailable");
    out
}

/// A fresh 256-bit secret as unpadded base64url (43 characters): codes, tokens, session
/// ids, client secrets (RFC 6749 §10.10 asks for at most 2^-128 guessing odds).
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A client_id: 128 random bits as 32 lowercase hex digits, so it never starts with `-`
/// (which a command line would read as an option) and survives any copy and paste.
pub fn random_client_id() -> String {
    random_bytes::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A secret people read and type: `groups` groups of five characters from an alphabet
/// without look-alikes (no i, l, o, 1), joined by dashes; 25 bits per group.
pub fn random_readable(groups: usize) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghjkmnpqrstuvwxyz023456789";
    (0..groups)
        .map(|_| {
            random_bytes::<5>()
                .iter()
                .map(|b| ALPHABET[usize::from(b & 31)] as char)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// A 128-bit identifier (subject ids, jti, sid) as unpadded base64url.
pub fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}
