//! What a panic looks like to an administrator: one line with the place and the way out,
//! never a stack trace. Code that calls into a library known to panic on bad input (redb on
//! a damaged file) wraps the call in [`contained`], which turns the panic into an error and
//! keeps the line off the terminal, because the caller reports the failure itself.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

thread_local! {
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
}

/// Installs the process-wide hook; called once by `main`.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        if CONTAINED.with(Cell::get) {
            return;
        }
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "latchkey: internal error{place}: {}. If the database file is damaged, restore a backup with `latchkey restore FILE`.",
            message(info.payload())
        );
    }));
}

/// Runs `f`, returning `None` if it panicked (without printing the panic).
pub fn contained<T>(f: impl FnOnce() -> T) -> Option<T> {
    let was = CONTAINED.with(|c| c.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(was));
    result.ok()
}

fn message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contained_turns_a_panic_into_none_and_passes_values_through() {
        assert_eq!(contained(|| 7), Some(7));
        assert_eq!(contained(|| -> u8 { panic!("boom") }), None);
        // The flag is restored: a later panic outside is not silenced.
        assert!(!CONTAINED.with(Cell::get));
    }

    #[test]
    fn message_reads_both_payload_kinds() {
        assert_eq!(message(&"static"), "static");
        assert_eq!(message(&String::from("owned")), "owned");
        assert_eq!(message(&42u8), "panic");
    }
}
