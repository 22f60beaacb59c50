//! Password hashing with argon2id (SPEC §8: m=64 MiB, t=3, p=1 by default, never below
//! m=19 MiB, t=2) and the password rules: 12-128 characters, not a common password, not
//! the username. Hashing is CPU- and memory-heavy: callers run it on the bounded pool.

use std::collections::HashSet;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 128;

/// argon2id parameters and the size of the hashing pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PasswordParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub pool_threads: usize,
    pub pool_queue: usize,
}

/// SPEC §8's argon2id parameters (m=64 MiB, t=3, p=1) and a pool of two threads with
/// eight waiting: what an unconfigured server uses.
impl Default for PasswordParams {
    fn default() -> Self {
        PasswordParams {
            memory_kib: 65_536,
            iterations: 3,
            parallelism: 1,
            pool_threads: 2,
            pool_queue: 8,
        }
    }
}

fn argon2(p: &PasswordParams) -> Result<Argon2<'static>, String> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| e.to_string())?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A fresh 16-byte salt from the system's random source (aws-lc-rs).
fn salt() -> Result<SaltString, String> {
    let bytes: [u8; 16] = crate::clock::random_bytes();
    SaltString::encode_b64(&bytes).map_err(|e| e.to_string())
}

/// Hashes a password into a PHC string with a fresh 16-byte salt.
pub fn hash(password: &str, p: &PasswordParams) -> Result<String, String> {
    let salt = salt()?;
    argon2(p)?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Work areas are reserved with room for at least this many 1 KiB blocks (33 MiB), above
/// glibc's largest mmap threshold.
const MAPPED_BLOCKS: usize = 33 * 1024;

/// Verifies a password against a stored PHC string (with the parameters inside it),
/// comparing in constant time.
pub fn verify(password: &str, phc: &str) -> bool {
    verify_inner(password, phc).unwrap_or(false)
}

fn verify_inner(password: &str, phc: &str) -> Option<bool> {
    let parsed = PasswordHash::new(phc).ok()?;
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .ok()?
        .unwrap_or(Version::V0x13);
    let expected = parsed.hash?;
    let mut salt_buf = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt_buf).ok()?;
    let params = Params::try_from(&parsed).ok()?;
    let params = Params::new(
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        Some(expected.len()),
    )
    .ok()?;
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    // A fresh work area per hash, returned to the system afterwards, so an idle server
    // holds none. glibc maps allocations of 32 MiB and more on their own and unmaps them
    // on free; below that it may keep freed memory in per-thread arenas. So the area is
    // reserved at no less than that size; pages past `need` are never touched, so they
    // cost address space only. Memory is bounded by the pool's threads (callers run on
    // it), not by requests.
    let need = params.block_count();
    let mut blocks = Vec::with_capacity(need.max(MAPPED_BLOCKS));
    blocks.resize(need, argon2::Block::default());
    let ok = argon
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks)
        .is_ok();
    // The work area holds password-derived state: wipe it before it goes back.
    blocks.fill(argon2::Block::default());
    std::hint::black_box(&blocks);
    drop(blocks);
    let equal = ok && super::ct_eq(&out, expected.as_bytes());
    zeroize::Zeroize::zeroize(&mut out);
    Some(equal)
}

/// Whether a stored hash was made with other parameters than the configured ones
/// (rehash on the next successful sign-in).
pub fn needs_rehash(phc: &str, p: &PasswordParams) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return true;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return true;
    };
    parsed.algorithm.as_str() != "argon2id"
        || params.m_cost() != p.memory_kib
        || params.t_cost() != p.iterations
        || params.p_cost() != p.parallelism
}

fn common_passwords() -> &'static HashSet<String> {
    static LIST: OnceLock<HashSet<String>> = OnceLock::new();
    LIST.get_or_init(|| {
        include_str!("../../assets/common-passwords.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(str::to_lowercase)
            .collect()
    })
}

/// SPEC §8 / ASVS V2.1: length in characters (no truncation, any Unicode), not on the
/// bundled list, not the username, not a single repeated character.
pub fn check_policy(password: &str, username: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!("password: must be at least {MIN_LEN} characters"));
    }
    if n > MAX_LEN {
        return Err(format!("password: must be at most {MAX_LEN} characters"));
    }
    let lower = password.to_lowercase();
    if common_passwords().contains(&lower) {
        return Err("password: is on the list of commonly used passwords".into());
    }
    if !username.is_empty() && lower.contains(&username.to_lowercase()) {
        return Err("password: must not contain the username".into());
    }
    let mut chars = password.chars();
    let first = chars.next();
    if chars.all(|c| Some(c) == first) {
        return Err("password: must not be one repeated character".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor() -> PasswordParams {
        PasswordParams {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            pool_threads: 1,
            pool_queue: 1,
        }
    }

    #[test]
    fn hash_verify_and_rehash() {
        let h = hash("correct horse battery staple", &floor()).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery staple", &h));
        assert!(!verify("correct horse battery stapl", &h));
        assert!(!verify("x", "not a phc string"));
        assert!(!needs_rehash(&h, &floor()));
        assert!(needs_rehash(
            &h,
            &PasswordParams {
                iterations: 3,
                ..floor()
            }
        ));
    }

    #[test]
    fn policy() {
        assert!(check_policy("correct horse battery staple", "alice").is_ok());
        assert!(
            check_policy("short", "alice")
                .unwrap_err()
                .contains("at least")
        );
        assert!(
            check_policy(&"ab".repeat(65), "alice")
                .unwrap_err()
                .contains("at most")
        );
        assert!(
            check_policy("qwerty123456", "alice")
                .unwrap_err()
                .contains("commonly")
        );
        assert!(
            check_policy("QWERTY123456", "alice")
                .unwrap_err()
                .contains("commonly")
        );
        assert!(
            check_policy("alice-is-my-password", "alice")
                .unwrap_err()
                .contains("username")
        );
        assert!(
            check_policy("aaaaaaaaaaaaaaaa", "bob")
                .unwrap_err()
                .contains("repeated")
        );
        // Twelve characters, counted as characters rather than bytes.
        assert!(check_policy("ééééééééééé1", "bob").is_ok());
    }
}
