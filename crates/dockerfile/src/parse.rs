//! The Dockerfile's syntax, read the way BuildKit's parser reads it: parser
//! directives, comments, line continuations (the escape character at the
//! end of a line), heredocs, and one node per instruction with its flags
//! and arguments still unexpanded. `Ast::dump` prints BuildKit's
//! s-expression form, which its parser test tables are written in.

use crate::shell::Lexer;

/// The largest Dockerfile accepted (BuildKit's frontend caps it too).
pub const MAX_DOCKERFILE: usize = 16 << 20;

/// A parse error at a 1-based line of the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: message.into(),
    }
}

/// A here-document attached to a RUN, COPY or ADD line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// `3<<EOF` feeds fd 3; 0 when not given.
    pub fd: u32,
    /// Variables in the content are expanded (the delimiter was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are removed from the content and the delimiter.
    pub chomp: bool,
    /// The lines between the instruction and the delimiter, each ending in
    /// a newline.
    pub content: String,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The instruction's name, lower case (`run`, `copy`, ...).
    pub cmd: String,
    /// `--name[=value]` words before the arguments, quotes removed.
    pub flags: Vec<String>,
    /// The arguments, as the instruction's line parser splits them. For
    /// ENV and LABEL: key, value, separator (`=` or "" for the legacy
    /// `KEY value` form), repeated.
    pub args: Vec<String>,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
    /// ONBUILD's instruction.
    pub sub: Option<Box<Node>>,
    pub heredocs: Vec<Heredoc>,
    /// The logical line (continuations joined) as written.
    pub original: String,
    pub start_line: usize,
    pub end_line: usize,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ast {
    pub nodes: Vec<Node>,
    /// `# escape=` (`\` by default, or a backtick).
    pub escape: char,
    /// `# syntax=`.
    pub syntax: Option<String>,
    /// `# check=`.
    pub check: Option<String>,
    pub warnings: Vec<String>,
}

const HEREDOC_COMMANDS: &[&str] = &["add", "copy", "run"];

impl Node {
    fn can_contain_heredoc(&self) -> bool {
        let n = match (&self.sub, self.cmd.as_str()) {
            (Some(sub), "onbuild") => sub,
            _ => self,
        };
        HEREDOC_COMMANDS.contains(&n.cmd.as_str()) && !n.json
    }

    /// BuildKit's dump of one node: `cmd ["flags"] "arg" ...`.
    pub fn dump(&self) -> String {
        let mut s = self.cmd.clone();
        if !self.flags.is_empty() {
            let f: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(&format!(" [{}]", f.join(" ")));
        }
        if let Some(sub) = &self.sub {
            s.push_str(&format!(" ({})", sub.dump()));
        }
        // ENV and LABEL: keys and values (the separator is not shown).
        let pairs = matches!(self.cmd.as_str(), "env" | "label");
        for (i, a) in self.args.iter().enumerate() {
            if pairs && i % 3 == 2 {
                continue;
            }
            s.push(' ');
            s.push_str(&go_quote(a));
        }
        s.trim().to_string()
    }
}

impl Ast {
    /// BuildKit's dump: one `(node)` line per instruction.
    pub fn dump(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("({})\n", n.dump()))
            .collect()
    }
}

/// Go's `strconv.Quote`, as BuildKit's dumps use it.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The parser directives at the top of the file.
struct Directives {
    escape: char,
    syntax: Option<String>,
    check: Option<String>,
    escape_seen: bool,
    done: bool,
}

impl Directives {
    /// Looks at a line before the first instruction or other comment:
    /// `# name=value` with a known name is a directive; anything else ends
    /// the directives.
    fn possible(&mut self, line: &str, lineno: usize) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = directive(line) else {
            self.done = true;
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        let slot = match name.as_str() {
            "escape" => {
                if value != "\\" && value != "`" {
                    return Err(err(
                        lineno,
                        format!("invalid escape token '{value}' does not match ` or \\"),
                    ));
                }
                if self.escape_seen {
                    return Err(err(lineno, "only one escape parser directive can be used"));
                }
                self.escape = value.chars().next().unwrap_or('\\');
                self.escape_seen = true;
                return Ok(());
            }
            "syntax" => &mut self.syntax,
            "check" => &mut self.check,
            _ => {
                self.done = true;
                return Ok(());
            }
        };
        if slot.is_some() {
            return Err(err(
                lineno,
                format!("only one {name} parser directive can be used"),
            ));
        }
        *slot = Some(value.to_string());
        Ok(())
    }
}

/// `#\s*name\s*=\s*value\s*` with name `[a-zA-Z][a-zA-Z0-9]*`.
fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let end = rest
        .char_indices()
        .find(|(_, c)| !c.is_ascii_alphanumeric())
        .map_or(rest.len(), |(i, _)| i);
    let name = &rest[..end];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[end..].trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then_some((name, value))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a line continuation (the escape character, then only spaces or
/// tabs, at the end of the line; not when the escape itself is escaped).
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(before) = t.strip_suffix(escape) {
        if before.is_empty() || !before.ends_with(escape) {
            return (before.to_string(), false);
        }
    }
    (line.to_string(), true)
}

/// Parses a whole Dockerfile.
pub fn parse(text: &str) -> Result<Ast, ParseError> {
    if text.len() > MAX_DOCKERFILE {
        return Err(err(
            1,
            format!(
                "the Dockerfile is {} bytes; the limit is {MAX_DOCKERFILE}",
                text.len()
            ),
        ));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Lines keep no terminator; a \r before \n goes too.
    let lines: Vec<&str> = text
        .split_inclusive('\n')
        .map(|l| l.trim_end_matches(['\n', '\r']))
        .collect();
    let mut d = Directives {
        escape: '\\',
        syntax: None,
        check: None,
        escape_seen: false,
        done: false,
    };
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let lineno = i + 1;
        let stripped = raw.trim_start();
        d.possible(stripped, lineno)?;
        i += 1;
        if is_comment(stripped) {
            continue;
        }
        let start_line = lineno;
        let (mut line, mut done) = trim_continuation(stripped, d.escape);
        if done && line.trim().is_empty() {
            continue;
        }
        let mut empty_continuation = false;
        while !done && i < lines.len() {
            let next = lines[i];
            d.possible(next, i + 1)?;
            i += 1;
            if is_comment(next) {
                continue;
            }
            if next.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (cont, end) = trim_continuation(next, d.escape);
            line.push_str(&cont);
            done = end;
        }
        if empty_continuation {
            warnings.push(format!(
                "line {start_line}: empty continuation line found in: {line}"
            ));
        }
        let mut node = node_from_line(&line, d.escape, start_line)?;
        if node.can_contain_heredoc() {
            for mut h in heredocs_in(&line).map_err(|m| err(start_line, m))? {
                let mut terminated = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    let candidate = if h.chomp {
                        l.trim_start_matches('\t')
                    } else {
                        l
                    };
                    if candidate == h.name {
                        terminated = true;
                        break;
                    }
                    h.content.push_str(l);
                    h.content.push('\n');
                }
                if !terminated {
                    return Err(err(
                        start_line,
                        format!(
                            "unterminated heredoc: no line {:?} ends the here-document started here",
                            h.name
                        ),
                    ));
                }
                if h.chomp {
                    h.content = h
                        .content
                        .split_inclusive('\n')
                        .map(|l| l.trim_start_matches('\t'))
                        .collect();
                }
                node.heredocs.push(h);
            }
        }
        node.start_line = start_line;
        node.end_line = i.max(start_line);
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(err(
            lines.len().max(1),
            "file with no instructions: a Dockerfile needs at least a FROM",
        ));
    }
    Ok(Ast {
        nodes,
        escape: d.escape,
        syntax: d.syntax,
        check: d.check,
        warnings,
    })
}

/// The instructions berth knows.
pub const INSTRUCTIONS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

fn node_from_line(line: &str, escape: char, lineno: usize) -> Result<Node, ParseError> {
    let trimmed = line.trim();
    let (word, rest) = match trimmed.find(|c: char| c.is_whitespace()) {
        Some(at) => (&trimmed[..at], trimmed[at..].trim_start()),
        None => (trimmed, ""),
    };
    let cmd = word.to_ascii_lowercase();
    let (flags, rest) = builder_flags(rest);
    let rest = rest.trim();
    let mut node = Node {
        cmd: cmd.clone(),
        flags,
        args: Vec::new(),
        json: false,
        sub: None,
        heredocs: Vec::new(),
        original: line.to_string(),
        start_line: lineno,
        end_line: lineno,
    };
    let e = |m: String| err(lineno, m);
    match cmd.as_str() {
        "add" | "copy" | "volume" => {
            if let Some(list) = json_array(rest).map_err(e)? {
                node.args = list;
                node.json = true;
            } else {
                node.args = whitespace_split(rest);
            }
        }
        "arg" => node.args = words(rest, escape),
        "cmd" | "entrypoint" | "run" | "shell" => {
            if let Some(list) = json_array(rest).map_err(e)? {
                node.args = list;
                node.json = true;
            } else if !rest.is_empty() {
                node.args = vec![rest.to_string()];
            }
        }
        "env" | "label" => node.args = name_values(rest, &cmd, escape).map_err(e)?,
        "expose" | "from" => node.args = whitespace_split(rest),
        "healthcheck" => {
            let (typ, tail) = match rest.find(|c: char| c.is_whitespace()) {
                Some(at) => (&rest[..at], rest[at..].trim_start()),
                None => (rest, ""),
            };
            if !typ.is_empty() {
                node.args.push(typ.to_string());
                if let Some(list) = json_array(tail).map_err(e)? {
                    node.args.extend(list);
                    node.json = true;
                } else if !tail.is_empty() {
                    node.args.push(tail.to_string());
                }
            }
        }
        "maintainer" | "stopsignal" | "user" | "workdir" if !rest.is_empty() => {
            node.args = vec![rest.to_string()];
        }
        "onbuild" if !rest.is_empty() => {
            node.sub = Some(Box::new(node_from_line(rest, escape, lineno)?));
        }
        _ => {}
    }
    Ok(node)
}

/// `--flag[=value]` words at the start of the arguments (quotes and
/// backslashes processed in them); a bare `--` ends them.
fn builder_flags(line: &str) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    let mut rest = line;
    loop {
        let t = rest.trim_start();
        if !t.starts_with("--") {
            return (flags, t);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut end = t.len();
        let mut chars = t.char_indices();
        while let Some((at, c)) = chars.next() {
            match quote {
                None if c.is_whitespace() => {
                    end = at;
                    break;
                }
                None if c == '\'' || c == '"' => quote = Some(c),
                Some(q) if c == q => quote = None,
                _ if c == '\\' => {
                    if let Some((_, n)) = chars.next() {
                        word.push(n);
                    }
                }
                _ => word.push(c),
            }
        }
        rest = &t[end..];
        if word == "--" {
            return (flags, rest.trim_start());
        }
        flags.push(word);
    }
}

/// A JSON array of strings, if the text is one (`None` when it is not JSON
/// at all; an error for an array of something else).
fn json_array(rest: &str) -> Result<Option<Vec<String>>, String> {
    let t = rest.trim_start();
    if !t.starts_with('[') {
        return Ok(None);
    }
    match json::parse_string_array(t) {
        json::Parsed::Strings(v) => Ok(Some(v)),
        json::Parsed::NotStrings => {
            Err("when using JSON array syntax, arrays must be comprised of strings only".into())
        }
        json::Parsed::NotJson => Ok(None),
    }
}

fn whitespace_split(rest: &str) -> Vec<String> {
    rest.split([' ', '\t', '\r', '\x0b', '\x0c'])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Words separated by whitespace, with quotes (kept) grouping them and the
/// escape character (kept) protecting the next character.
pub fn words(rest: &str, escape: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            None => {
                if c.is_whitespace() {
                    if in_word && (blank_ok || !word.is_empty()) {
                        out.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    in_word = false;
                    blank_ok = false;
                    continue;
                }
                in_word = true;
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    blank_ok = true;
                }
                if c == escape {
                    if let Some(n) = chars.next() {
                        word.push(c);
                        word.push(n);
                    }
                    continue;
                }
                word.push(c);
            }
            Some(q) => {
                if c == q {
                    quote = None;
                }
                if c == escape && q != '\'' {
                    match chars.next() {
                        Some(n) => {
                            word.push(c);
                            word.push(n);
                        }
                        None => quote = None,
                    }
                    continue;
                }
                word.push(c);
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        out.push(word);
    }
    out
}

/// ENV and LABEL: `KEY value` (legacy: the rest of the line is the value)
/// or `k=v k2="v 2"...`, as key, value, separator triples.
fn name_values(rest: &str, cmd: &str, escape: char) -> Result<Vec<String>, String> {
    let ws = words(rest, escape);
    let Some(first) = ws.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let (k, v) = match rest.find([' ', '\t']) {
            Some(at) => (&rest[..at], rest[at..].trim_start_matches([' ', '\t'])),
            None => {
                return Err(format!(
                    "{} must have two arguments: {} NAME VALUE or {} NAME=VALUE ...",
                    cmd.to_uppercase(),
                    cmd.to_uppercase(),
                    cmd.to_uppercase()
                ))
            }
        };
        return Ok(vec![k.to_string(), v.to_string(), String::new()]);
    }
    let mut out = Vec::new();
    for w in ws {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            ));
        };
        out.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(out)
}

/// The here-documents a line opens: words like `<<EOF`, `<<-EOF`,
/// `<<"EOF"`, `3<<EOF`.
fn heredocs_in(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut raw = Lexer::new('\\');
    raw.raw_quotes = true;
    raw.raw_escapes = true;
    raw.skip_unset_env = true;
    let none = |_: &str| None;
    let words = raw.process_words(line, &none).unwrap_or_default();
    let mut out = Vec::new();
    for w in words {
        if let Some(h) = heredoc_word(&w)? {
            out.push(h);
        }
    }
    Ok(out)
}

fn heredoc_word(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let none = |_: &str| None;
    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let cooked = lex.process_words(rest, &none).map_err(|e| e.to_string())?;
    if cooked.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let kept = lex.process_words(rest, &none).map_err(|e| e.to_string())?;
    if kept.len() != cooked.len() {
        return Err(format!("inconsistent heredoc delimiter {rest:?}"));
    }
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    let name = cooked.into_iter().next().unwrap_or_default();
    Ok(Some(Heredoc {
        expand: quotes(&name) == quotes(&kept[0]),
        fd: word[..digits].parse().unwrap_or(0),
        chomp,
        content: String::new(),
        name,
    }))
}

/// A small JSON reader for the exec form: an array of strings, with JSON's
/// escapes. Anything that is not valid JSON is "not JSON" (the shell form).
mod json {
    pub enum Parsed {
        Strings(Vec<String>),
        NotStrings,
        NotJson,
    }

    pub fn parse_string_array(s: &str) -> Parsed {
        let mut p = P {
            b: s.as_bytes(),
            i: 0,
        };
        let mut out = Vec::new();
        let mut not_strings = false;
        p.ws();
        if !p.eat(b'[') {
            return Parsed::NotJson;
        }
        p.ws();
        if p.eat(b']') {
            p.ws();
            return if p.i == p.b.len() {
                Parsed::Strings(out)
            } else {
                Parsed::NotJson
            };
        }
        loop {
            p.ws();
            if p.peek() == Some(b'"') {
                match p.string() {
                    Some(v) => out.push(v),
                    None => return Parsed::NotJson,
                }
            } else if p.value().is_some() {
                not_strings = true;
            } else {
                return Parsed::NotJson;
            }
            p.ws();
            if p.eat(b',') {
                continue;
            }
            if p.eat(b']') {
                break;
            }
            return Parsed::NotJson;
        }
        p.ws();
        if p.i != p.b.len() {
            return Parsed::NotJson;
        }
        if not_strings {
            Parsed::NotStrings
        } else {
            Parsed::Strings(out)
        }
    }

    struct P<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl P<'_> {
        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }
        fn eat(&mut self, c: u8) -> bool {
            if self.peek() == Some(c) {
                self.i += 1;
                true
            } else {
                false
            }
        }
        fn ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.i += 1;
            }
        }
        fn hex4(&mut self) -> Option<u32> {
            let h = self.b.get(self.i..self.i + 4)?;
            let v = u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?;
            self.i += 4;
            Some(v)
        }
        fn string(&mut self) -> Option<String> {
            if !self.eat(b'"') {
                return None;
            }
            let mut out: Vec<u8> = Vec::new();
            loop {
                let c = self.peek()?;
                self.i += 1;
                match c {
                    b'"' => return String::from_utf8(out).ok(),
                    b'\\' => {
                        let e = self.peek()?;
                        self.i += 1;
                        let ch = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\x08',
                            b'f' => '\x0c',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let hi = self.hex4()?;
                                let code = if (0xD800..0xDC00).contains(&hi) {
                                    if self.b.get(self.i..self.i + 2) == Some(b"\\u") {
                                        self.i += 2;
                                        let lo = self.hex4()?;
                                        if !(0xDC00..0xE000).contains(&lo) {
                                            return None;
                                        }
                                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                    } else {
                                        0xFFFD
                                    }
                                } else {
                                    hi
                                };
                                char::from_u32(code).unwrap_or('\u{fffd}')
                            }
                            _ => return None,
                        };
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    c if c < 0x20 => return None,
                    c => out.push(c),
                }
            }
        }
        /// Any other JSON value (skipped), bounded in depth.
        fn value(&mut self) -> Option<()> {
            self.value_depth(0)
        }
        fn value_depth(&mut self, depth: usize) -> Option<()> {
            if depth > 64 {
                return None;
            }
            self.ws();
            match self.peek()? {
                b'"' => self.string().map(|_| ()),
                b'[' | b'{' => {
                    let close = if self.peek() == Some(b'[') {
                        b']'
                    } else {
                        b'}'
                    };
                    self.i += 1;
                    self.ws();
                    if self.eat(close) {
                        return Some(());
                    }
                    loop {
                        if close == b'}' {
                            self.ws();
                            self.string()?;
                            self.ws();
                            if !self.eat(b':') {
                                return None;
                            }
                        }
                        self.value_depth(depth + 1)?;
                        self.ws();
                        if self.eat(b',') {
                            continue;
                        }
                        return self.eat(close).then_some(());
                    }
                }
                b't' => self.lit(b"true"),
                b'f' => self.lit(b"false"),
                b'n' => self.lit(b"null"),
                b'-' | b'0'..=b'9' => {
                    let start = self.i;
                    while matches!(
                        self.peek(),
                        Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    ) {
                        self.i += 1;
                    }
                    std::str::from_utf8(&self.b[start..self.i])
                        .ok()?
                        .parse::<f64>()
                        .ok()
                        .map(|_| ())
                }
                _ => None,
            }
        }
        fn lit(&mut self, w: &[u8]) -> Option<()> {
            if self.b.get(self.i..self.i + w.len()) == Some(w) {
                self.i += w.len();
                Some(())
            } else {
                None
            }
        }
    }
}
