//! Writing to standard output and error without ever aborting: `println!` panics when the stream
//! is closed (`open-cowork-gateway | true`, stdout on `/dev/full`, a closed stderr pipe), and a
//! release build turns that panic into an abort. A line that cannot be written is dropped: the
//! daemon's work does not depend on anyone reading it.

use std::io::Write;

/// Writes `text` to standard output; a closed or full stream drops it.
pub fn stdout(text: std::fmt::Arguments<'_>) {
    let _ = std::io::stdout().write_fmt(text);
}

/// Writes `text` to standard error; a closed or full stream drops it.
pub fn stderr(text: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().write_fmt(text);
}

/// `println!` that drops the line when standard output is closed or full.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::console::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that drops the text when standard output is closed or full.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::console::stdout(format_args!($($arg)*))
    };
}

/// `eprintln!` that drops the line when standard error is closed or full.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::console::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}
