//! The words of a command line, read the same way by every subcommand: `--flag value` and
//! `--flag=value` both work, and a flag's value is never empty nor (as the next word) another flag.

/// One word of the command line; a `--flag=value` is split at its first `=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub flag: String,
    /// The value written after `=`, if the word had one.
    pub inline: Option<String>,
}

/// The words after a program or subcommand name.
pub struct Words<I> {
    args: I,
}

impl<I: Iterator<Item = String>> Words<I> {
    pub fn new(args: I) -> Self {
        Self { args }
    }

    pub fn next_word(&mut self) -> Option<Word> {
        let arg = self.args.next()?;
        Some(match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                Word { flag: flag.to_owned(), inline: Some(value.to_owned()) }
            }
            _ => Word { flag: arg, inline: None },
        })
    }

    /// The value of `word`'s flag: its inline value, else the next word. `None` when there is
    /// none, it is empty, or the next word is another flag (`--config --print` forgot a value).
    pub fn value(&mut self, word: &Word) -> Option<String> {
        match &word.inline {
            Some(inline) => Some(inline.clone()),
            None => self.args.next().filter(|next| !next.starts_with("--")),
        }
        .filter(|value| !value.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(args: &[&str]) -> Words<std::vec::IntoIter<String>> {
        Words::new(args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>().into_iter())
    }

    #[test]
    fn inline_and_separate_values() {
        let mut line = words(&["--a=1", "--b", "2", "word", "--c", "--d", "--e="]);
        let a = line.next_word().unwrap();
        assert_eq!((a.flag.as_str(), line.value(&a).as_deref()), ("--a", Some("1")));
        let b = line.next_word().unwrap();
        assert_eq!((b.flag.as_str(), line.value(&b).as_deref()), ("--b", Some("2")));
        assert_eq!(line.next_word(), Some(Word { flag: "word".into(), inline: None }));
        let c = line.next_word().unwrap();
        assert_eq!(line.value(&c), None, "the next word is a flag");
        let e = line.next_word().unwrap();
        assert_eq!((e.flag.as_str(), line.value(&e)), ("--e", None), "an empty value is none");
        assert_eq!(line.next_word(), None);
    }
}
