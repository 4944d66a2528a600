//! A small SVG writer for tracer's pictures: standalone documents (no scripts, no external
//! fonts or images) that open in a browser and on GitHub, with every text escaped.

use std::fmt::Write as _;

pub const SANS: &str = "'DejaVu Sans', 'Segoe UI', Helvetica, Arial, sans-serif";
pub const MONO: &str = "'DejaVu Sans Mono', Menlo, Consolas, monospace";

/// Text as XML character data or an attribute value: markup characters escaped, and the
/// control characters XML 1.0 forbids replaced by U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// About how wide `text` is at `size` px in the pictures' sans-serif font: enough to size boxes
/// and wrap lines without font metrics.
pub fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.6
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(max.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

/// `text` in lines of at most `max` characters, broken at spaces (a longer word is cut).
pub fn wrap(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > max {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            lines.push(word.drain(..max).collect());
        }
        let word: String = word.into_iter().collect();
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > max {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// How a text is set: size, weight, colour, anchor, font.
#[derive(Debug, Clone, Copy)]
pub struct Font {
    pub size: f64,
    pub bold: bool,
    pub colour: &'static str,
    /// "start", "middle" or "end".
    pub anchor: &'static str,
    pub mono: bool,
}

impl Font {
    pub const fn new(size: f64, colour: &'static str) -> Self {
        Self {
            size,
            bold: false,
            colour,
            anchor: "start",
            mono: false,
        }
    }

    pub const fn bold(mut self) -> Self {
        self.bold = true;
        self
    }

    pub const fn middle(mut self) -> Self {
        self.anchor = "middle";
        self
    }

    pub const fn end(mut self) -> Self {
        self.anchor = "end";
        self
    }

    pub const fn mono(mut self) -> Self {
        self.mono = true;
        self
    }

    pub const fn coloured(mut self, colour: &'static str) -> Self {
        self.colour = colour;
        self
    }
}

/// An SVG document being written, element by element.
#[derive(Debug, Default)]
pub struct Svg {
    body: String,
}

impl Svg {
    /// Opens an element that holds others (`g`); `attributes` are written as given, so any
    /// text in them must come through [`escape`].
    pub fn open(&mut self, tag: &str, attributes: &str) {
        let _ = writeln!(self.body, "<{tag} {attributes}>");
    }

    pub fn close(&mut self, tag: &str) {
        let _ = writeln!(self.body, "</{tag}>");
    }

    /// A tooltip for the element just opened.
    pub fn title(&mut self, text: &str) {
        let _ = writeln!(self.body, "<title>{}</title>", escape(text));
    }

    /// `attributes` are written as given (fill, stroke, ...): constants, not text.
    pub fn rect(&mut self, x: f64, y: f64, width: f64, height: f64, attributes: &str) {
        let _ = writeln!(
            self.body,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{height:.1}" {attributes}/>"#
        );
    }

    pub fn line(&mut self, from: (f64, f64), to: (f64, f64), attributes: &str) {
        let _ = writeln!(
            self.body,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" {attributes}/>"#,
            from.0, from.1, to.0, to.1
        );
    }

    pub fn text(&mut self, x: f64, y: f64, font: Font, text: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{}" fill="{}" text-anchor="{}"{}{}>{}</text>"#,
            font.size,
            font.colour,
            font.anchor,
            if font.bold {
                r#" font-weight="bold""#
            } else {
                ""
            },
            if font.mono {
                format!(r#" font-family="{MONO}""#)
            } else {
                String::new()
            },
            escape(text)
        );
    }

    /// Another picture's elements, drawn over this one's.
    pub fn append(&mut self, other: Self) {
        self.body.push_str(&other.body);
    }

    /// Anything else, written as given.
    pub fn raw(&mut self, element: &str) {
        self.body.push_str(element);
        self.body.push('\n');
    }

    /// The finished document: `width` x `height` pixels on a white page, `title` for screen
    /// readers and the browser's tab.
    pub fn finish(self, width: f64, height: f64, title: &str) -> String {
        let (width, height) = (width.ceil(), height.ceil());
        format!(
            concat!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" ",
                "viewBox=\"0 0 {w} {h}\" font-family=\"{font}\" role=\"img\" aria-label=\"{title}\">\n",
                "<title>{title}</title>\n",
                "<rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n",
                "{body}</svg>\n"
            ),
            w = width,
            h = height,
            font = SANS,
            title = escape(title),
            body = self.body
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_forbidden_characters() {
        assert_eq!(
            escape(r#"<a href="x">&'y'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;y&apos;&lt;/a&gt;"
        );
        assert_eq!(escape("a\u{1}b\nc"), "a\u{fffd}b\nc");
    }

    #[test]
    fn wraps_at_spaces_and_cuts_long_words() {
        assert_eq!(wrap("one two three", 7), ["one two", "three"]);
        assert_eq!(wrap("abcdefghij k", 4), ["abcd", "efgh", "ij k"]);
        assert!(wrap("", 10).is_empty());
        assert_eq!(clip("cvl_0_0_ns_spdk", 8), "cvl_0_0…");
        assert_eq!(clip("short", 8), "short");
    }

    #[test]
    fn a_document_is_standalone_xml() {
        let mut svg = Svg::default();
        svg.text(1.0, 2.0, Font::new(12.0, "#000").bold(), "a < b & \"c\"");
        let document = svg.finish(10.2, 20.0, "t & t");
        let parsed = roxmltree::Document::parse(&document).unwrap();
        let root = parsed.root_element();
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
        assert_eq!(root.attribute("viewBox"), Some("0 0 11 20"));
        assert_eq!(root.attribute("width"), Some("11"));
        let text = root
            .descendants()
            .find(|node| node.has_tag_name("text"))
            .unwrap();
        assert_eq!(text.text(), Some("a < b & \"c\""));
    }
}
