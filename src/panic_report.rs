//! What a panic tells the user: one line, not a backtrace. A panic is a bug, except where
//! libtorch ran out of memory inside one of tch's panicking operators: that is named as such,
//! with what to lower, since it is the user's batch that did not fit.

/// A panic's message, from its payload.
pub fn message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic")
}

/// The line to print after `error: ` for a panic `message` raised at `place` (` at file:line`).
pub fn one_line(message: &str, place: &str) -> String {
    let cause = cause(message);
    if is_out_of_memory(cause) {
        return format!(
            "out of memory: {cause}; lower --batch-size, --batch-tokens, --max-length or --projection-dim, or free the device"
        );
    }
    format!("internal error{place}: {cause} (please report this)")
}

/// The exit code: 1 as for any error the user can act on, 101 (Rust's) for a bug.
pub fn exit_code(message: &str) -> i32 {
    if is_out_of_memory(cause(message)) {
        1
    } else {
        101
    }
}

/// The message's first line. tch's panics wrap libtorch's error, whose C++ backtrace follows
/// on escaped lines (`called `Result::unwrap()` on an `Err` value: Torch("...\nframe #0: ...")`):
/// of those, libtorch's own first line.
fn cause(message: &str) -> &str {
    let message = message.lines().next().unwrap_or(message);
    let Some((_, torch)) = message.split_once("Torch(\"") else { return message };
    let torch = torch.split("\\n").next().unwrap_or(torch);
    torch.strip_suffix("\")").unwrap_or(torch)
}

/// libtorch's allocation failures: CUDA's caching allocator and the CPU allocator.
fn is_out_of_memory(message: &str) -> bool {
    message.contains("out of memory") || message.contains("can't allocate memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allocation_failure_is_named_with_what_to_lower() {
        // As tch panics on a failed CPU allocation (the backtrace cut short).
        let cpu = r#"called `Result::unwrap()` on an `Err` value: Torch("[enforce fail at alloc_cpu.cpp:117] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 70368744177664 bytes. Error code 12 (Cannot allocate memory)\nframe #0: c10::ThrowEnforceNotMet(char const*, int, char const*, std::string const&, void const*) + 0x55\n")"#;
        assert_eq!(
            one_line(cpu, " at src/x.rs:1"),
            "out of memory: [enforce fail at alloc_cpu.cpp:117] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 70368744177664 bytes. Error code 12 (Cannot allocate memory); lower --batch-size, --batch-tokens, --max-length or --projection-dim, or free the device"
        );
        let cuda = r#"called `Result::unwrap()` on an `Err` value: Torch("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79.11 GiB")"#;
        assert!(one_line(cuda, "").starts_with("out of memory: CUDA out of memory. Tried"), "{}", one_line(cuda, ""));
        assert_eq!((exit_code(cpu), exit_code(cuda)), (1, 1));
    }

    /// Any other libtorch error in a panicking operator: libtorch's first line, no backtrace.
    #[test]
    fn a_torch_error_shows_its_first_line_as_an_internal_error() {
        let shape = r#"called `Result::unwrap()` on an `Err` value: Torch("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)\nException raised from meta at ../aten/src/ATen/native/LinearAlgebra.cpp:197\n")"#;
        assert_eq!(
            one_line(shape, " at src/x.rs:1"),
            "internal error at src/x.rs:1: mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5) (please report this)"
        );
        assert_eq!(exit_code(shape), 101);
    }

    #[test]
    fn any_other_panic_is_an_internal_error_to_report() {
        assert_eq!(
            one_line("index out of bounds\nmore", " at src/x.rs:1"),
            "internal error at src/x.rs:1: index out of bounds (please report this)"
        );
    }
}
