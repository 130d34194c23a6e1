//! Writing to standard output and error without ever aborting: `println!` panics when the stream
//! is closed (`open-cowork-gateway | true`, stdout on `/dev/full`, a closed stderr pipe), and a
//! release build turns that panic into an abort. A line that cannot be written is dropped: the
//! daemon's work does not depend on anyone reading it.

/// `println!` that drops the line when standard output is closed or full.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that drops the text when standard output is closed or full.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that drops the line when standard error is closed or full.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
