//! Escaping plain text for markup that reads `&`, `<` and `>` as its own: Telegram's HTML mode,
//! Slack's message text, and the HTML of the status page.

/// `&`, `<` and `>` as entities: all that Telegram's HTML mode and Slack's message text need
/// outside attributes. (Only the channels with markup call it.)
#[cfg(any(test, feature = "telegram", feature = "slack"))]
pub fn escape_text(text: &str) -> String {
    escape(text, false)
}

/// `&`, `<`, `>` and both quotes, for HTML element content and quoted attributes alike.
pub fn escape_html(text: &str) -> String {
    escape(text, true)
}

fn escape(text: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if quotes => out.push_str("&quot;"),
            '\'' if quotes => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_keeps_quotes_and_html_escapes_them() {
        assert_eq!(escape_text(r#"a < b && "c" > 'd'"#), r#"a &lt; b &amp;&amp; "c" &gt; 'd'"#);
        assert_eq!(escape_html(r#"a < b && "c" > 'd'"#), "a &lt; b &amp;&amp; &quot;c&quot; &gt; &#39;d&#39;");
    }
}
