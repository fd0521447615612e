//! The Dockerfile word lexer: variable expansion and quote removal in the
//! arguments of instructions, as BuildKit's `frontend/dockerfile/shell`
//! lexer does it.
//!
//! A word goes through one pass that:
//! - expands `$NAME`, `${NAME}` and the modifier forms `${NAME:-word}`,
//!   `${NAME-word}`, `${NAME:+word}`, `${NAME+word}`, `${NAME:?message}`,
//!   `${NAME?message}`, `${NAME#glob}`, `${NAME##glob}`, `${NAME%glob}`,
//!   `${NAME%%glob}`, `${NAME/glob/replacement}` and
//!   `${NAME//glob/replacement}` (the word parts may hold expansions
//!   and quotes themselves);
//! - removes single quotes (everything inside is literal) and double quotes
//!   (inside them only `$` and the escape character are special);
//! - applies the escape character (`\`, or `` ` `` with `# escape=` `` ` ``):
//!   it makes the next character literal and disappears.
//!
//! `$` followed by something that is not a name (`$.`, `$` at the end) is
//! kept as is. Positional (`$1`, `${10}`) and special parameters (`$@`,
//! `$*`, `$#`, `$?`, `$-`, `$$`, `$!`, `$0`) are looked up like any other
//! name, so they are normally unset and expand to nothing.
//!
//! Globs in `#`, `%` and `/` are BuildKit's: `*` (any run of characters),
//! `?` (one character), and `\*`, `\?`, `\\` for the literal characters;
//! anything else is literal (BuildKit has no bracket expressions there).
//! As in BuildKit, where these go through Go's regexp engine, the wildcards
//! do not match a newline. Matching is done by a small automaton in time
//! proportional to the value's length times the pattern's, never by
//! backtracking.
//!
//! Where this deliberately differs from BuildKit:
//! - `${NAME` with nothing after the name says "missing '}'" (BuildKit
//!   says "unsupported modifier (\u{fffd}) in substitution");
//! - with `skip_unset_env`, `${NAME//a/b}` of an unset name is kept as
//!   `${NAME//a/b}` (BuildKit drops one `/`);
//! - the words of [`Lexer::process_words`] are built with a buffer per
//!   nesting level (BuildKit's current code shares one, so that
//!   `ab${X:-c}` gives the single word `c` there);
//! - substitutions nest at most [`MAX_NESTING`] deep, and a `/` or `//`
//!   substitution may not produce more than [`MAX_EXPANSION`] bytes: both
//!   are errors instead of unbounded recursion or memory.
//! - names are made of letters, digits and `_` as Go's `unicode` package
//!   classifies them; here Rust's classification approximates it outside
//!   ASCII (a few rare non-ASCII characters may differ).

use std::collections::{BTreeMap, BTreeSet};

/// How deeply `${...}` substitutions may nest in one word.
pub const MAX_NESTING: usize = 128;

/// The most bytes a `${NAME/glob/replacement}` substitution may produce.
pub const MAX_EXPANSION: usize = 16 << 20;

/// Expands variables and removes quotes in Dockerfile words, as BuildKit's
/// shell lexer does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexer {
    /// The escape character: `\` (the default) or `` ` ``.
    pub escape: char,
    /// Keep the quote characters in the result (their meaning still
    /// applies).
    pub raw_quotes: bool,
    /// Keep the escape characters in the result (their meaning still
    /// applies).
    pub raw_escapes: bool,
    /// Leave references to unset variables as they are written
    /// (`$X`, `${X}`, `${X:-w}`, ...) instead of expanding them.
    pub skip_unset_env: bool,
    /// Treat quote characters as ordinary characters.
    pub skip_process_quotes: bool,
}

/// Why a word could not be expanded. The messages are BuildKit's.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ExpandError {
    /// `${` without its closing `}`.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${NAME/pattern` without the `/` that ends the pattern.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${}`, `${:...}`, `${{...}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// A modifier BuildKit does not have, like `${X:=w}` or `${X:#w}`.
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${NAME?message}` of an unset name, or `${NAME:?message}` of an
    /// unset or empty one.
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The message written in the word, or BuildKit's default.
        message: String,
    },
    /// A bad escape in the glob of `#`, `%` or `/`.
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern {
        /// The pattern, as expanded.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `'` without its closing `'`.
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    /// A `"` without its closing `"`.
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    /// Substitutions nested more than [`MAX_NESTING`] deep.
    #[error("syntax error: substitutions nested more than {0} deep")]
    TooDeep(usize),
    /// A substitution would produce more than [`MAX_EXPANSION`] bytes.
    #[error("substitution result longer than {0} bytes")]
    TooLong(usize),
}

/// Everything one pass over a word produces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The word, expanded (what [`Lexer::process_word`] returns).
    pub word: String,
    /// The word split at unquoted whitespace after expansion (what
    /// [`Lexer::process_words`] returns).
    pub words: Vec<String>,
    /// Names looked up that were set.
    pub matched: BTreeSet<String>,
    /// Names looked up that were not set.
    pub unmatched: BTreeSet<String>,
}

impl Lexer {
    /// A lexer with the given escape character (`\` or `` ` ``) and every
    /// option off.
    pub fn new(escape: char) -> Lexer {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    /// One word: variables expanded, quotes and escapes processed
    /// (BuildKit's `ProcessWord`).
    ///
    /// # Errors
    ///
    /// Bad syntax (an unterminated quote or `${`, an unsupported modifier,
    /// a bad glob) and `${NAME?}` / `${NAME:?}` of an unset (or empty)
    /// variable; see [`ExpandError`].
    pub fn process_word(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ExpandError> {
        self.process(word, env).map(|e| e.word)
    }

    /// The same, also returning the names of the variables it looked up
    /// that were set (`ProcessWordWithMatches`).
    ///
    /// # Errors
    ///
    /// As [`Lexer::process_word`].
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, BTreeSet<String>), ExpandError> {
        self.process(word, env).map(|e| (e.word, e.matched))
    }

    /// Splits into words after expansion, as the shell would
    /// (`ProcessWords`): unquoted whitespace, including whitespace that
    /// came from a variable's value, separates words; quoted or escaped
    /// whitespace does not.
    ///
    /// # Errors
    ///
    /// As [`Lexer::process_word`].
    pub fn process_words(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, ExpandError> {
        self.process(word, env).map(|e| e.words)
    }

    /// Everything at once: the word, its words, and the names looked up.
    ///
    /// # Errors
    ///
    /// As [`Lexer::process_word`].
    pub fn process(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Expansion, ExpandError> {
        // Go's text/scanner skips a byte order mark at the start.
        let word = word.strip_prefix('\u{feff}').unwrap_or(word);
        let mut ex = Expander {
            lexer: self,
            env,
            chars: word.chars().collect(),
            pos: 0,
            depth: 0,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        let (word, words) = ex.process_stop_on(None, self.raw_escapes)?;
        Ok(Expansion {
            word,
            words,
            matched: ex.matched,
            unmatched: ex.unmatched,
        })
    }
}

/// `KEY=VALUE` entries as a map, the way BuildKit reads an environment
/// list: a later entry for a key wins, and an entry without `=` sets the
/// key to the empty string.
pub fn env_map<I, S>(entries: I) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    entries
        .into_iter()
        .map(|e| {
            let e = e.as_ref();
            let (k, v) = e.split_once('=').unwrap_or((e, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Characters that make up a name after `$`: letters, digits, `_`.
/// Go's `unicode.IsLetter` is the L categories; Rust's `is_alphabetic`
/// also takes letter numbers (excluded here) and some marks.
fn is_letter(c: char) -> bool {
    c.is_alphabetic() && !c.is_numeric()
}

/// Go's `unicode.IsDigit` is the Nd category; Rust has no direct test, so
/// outside ASCII this takes numeric characters that are not alphabetic.
fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric() && !c.is_alphabetic())
}

/// POSIX special parameters (`$@`, `$*`, ...): one character names.
fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// The words of a word, built as BuildKit builds them: whitespace that
/// came unquoted (also from a variable) separates words.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if !c.is_whitespace() {
            self.add_raw_char(c);
        } else if self.in_word && !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
            self.in_word = false;
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.buf.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

/// One pass over one word.
struct Expander<'a> {
    lexer: &'a Lexer,
    env: &'a dyn Fn(&str) -> Option<String>,
    chars: Vec<char>,
    pos: usize,
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl Expander<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    /// Processes up to `stop` (consumed) or the end of the word (when
    /// `stop` is `None`); reaching the end while looking for `stop` is an
    /// error.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut words = Words::default();
        let quotes = !self.lexer.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let s = self.process_dollar()?;
                    words.add_string(&s);
                    result.push_str(&s);
                }
                '\'' if quotes => {
                    let s = self.process_single_quote()?;
                    words.add_raw_string(&s);
                    result.push_str(&s);
                }
                '"' if quotes => {
                    let s = self.process_double_quote(raw_escapes)?;
                    words.add_raw_string(&s);
                    result.push_str(&s);
                }
                _ => {
                    self.pos += 1;
                    if ch != self.lexer.escape {
                        words.add_char(ch);
                        result.push(ch);
                        continue;
                    }
                    if raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    // An escape at the very end is dropped.
                    let Some(escaped) = self.next() else { break };
                    words.add_raw_char(escaped);
                    result.push(escaped);
                }
            }
        }
        match stop {
            None => Ok((result, words.finish())),
            Some('/') => Err(ExpandError::MissingSlash),
            Some(_) => Err(ExpandError::MissingBrace),
        }
    }

    fn process_single_quote(&mut self) -> Result<String, ExpandError> {
        let raw = self.lexer.raw_quotes;
        let mut result = String::new();
        self.pos += 1;
        if raw {
            result.push('\'');
        }
        loop {
            match self.next() {
                None => return Err(ExpandError::UnterminatedSingleQuote),
                Some('\'') => {
                    if raw {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    /// Inside double quotes only `$` and the escape character are special,
    /// and the escape only escapes `"`, `$` and itself (otherwise it stays).
    fn process_double_quote(&mut self, raw_escapes: bool) -> Result<String, ExpandError> {
        let raw = self.lexer.raw_quotes;
        let escape = self.lexer.escape;
        let mut result = String::new();
        self.pos += 1;
        if raw {
            result.push('"');
        }
        loop {
            match self.peek() {
                None => return Err(ExpandError::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    if raw {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(ch) => {
                    self.pos += 1;
                    let mut out = ch;
                    if ch == escape {
                        if raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // Dropped; the missing quote is the error.
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == escape => {
                                self.pos += 1;
                                out = n;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(out);
                }
            }
        }
    }

    /// `$...` at the current position, with the nesting bounded.
    fn process_dollar(&mut self) -> Result<String, ExpandError> {
        self.depth += 1;
        let r = if self.depth > MAX_NESTING {
            Err(ExpandError::TooDeep(MAX_NESTING))
        } else {
            self.dollar()
        };
        self.depth -= 1;
        r
    }

    fn dollar(&mut self) -> Result<String, ExpandError> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(ExpandError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        match self.next() {
            None => Err(ExpandError::MissingBrace),
            Some('}') => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':') => {
                let op = self.next();
                self.modifier(&name, true, op)
            }
            Some(c @ ('+' | '-' | '?' | '#' | '%')) => self.modifier(&name, false, Some(c)),
            Some('/') => self.substitute(&name),
            Some(c) => Err(ExpandError::UnsupportedModifier(c.to_string())),
        }
    }

    /// `${NAME[:]op word}` for the ops `-`, `+`, `?`, `#`, `%` (and the
    /// unsupported others, which are errors after their word is read).
    fn modifier(
        &mut self,
        name: &str,
        colon: bool,
        op: Option<char>,
    ) -> Result<String, ExpandError> {
        let mut chs = String::from(if colon { ":" } else { "" });
        chs.push(op.unwrap_or('\u{fffd}'));
        let pattern_op = matches!(op, Some('#' | '%'));
        if colon && pattern_op {
            return Err(ExpandError::UnsupportedModifier(chs));
        }
        let word = self.word_until('}', pattern_op, ExpandError::MissingBrace)?;
        let value = self.get_env(name);
        if self.lexer.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{chs}{word}}}"));
        }
        let null = |v: &Option<String>| v.as_deref().is_none_or(|s| colon && s.is_empty());
        match op {
            Some('-') if null(&value) => Ok(word),
            Some('-') => Ok(value.unwrap_or_default()),
            Some('+') if null(&value) => Ok(String::new()),
            Some('+') => Ok(word),
            Some('?') => required(name, value, colon, word),
            Some(c @ ('#' | '%')) => {
                let (greedy, pattern) = match word.strip_prefix(c) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let value = value.unwrap_or_default();
                if c == '%' {
                    trim_suffix(pattern, &value, greedy)
                } else {
                    trim_prefix(pattern, &value, greedy)
                }
            }
            _ => Err(ExpandError::UnsupportedModifier(chs)),
        }
    }

    /// `${NAME/pattern/replacement}` and `${NAME//pattern/replacement}`.
    fn substitute(&mut self, name: &str) -> Result<String, ExpandError> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let pattern = self.word_until('/', true, ExpandError::MissingSlash)?;
        let replacement = self.word_until('}', true, ExpandError::MissingBrace)?;
        let value = self.get_env(name);
        if self.lexer.skip_unset_env && value.is_none() {
            let slashes = if all { "//" } else { "/" };
            return Ok(format!("${{{name}{slashes}{pattern}/{replacement}}}"));
        }
        let prog =
            Program::shell_glob(&pattern, true).map_err(|reason| ExpandError::InvalidPattern {
                pattern: pattern.clone(),
                reason,
            })?;
        let value: Vec<char> = value.unwrap_or_default().chars().collect();
        if all {
            replace_all(&prog, &value, &replacement)
        } else {
            Ok(replace_first(&prog, &value, &replacement))
        }
    }

    /// The word part of a substitution, up to `stop`; any failure that
    /// ran into the end of the input is reported as `at_end`.
    fn word_until(
        &mut self,
        stop: char,
        raw_escapes: bool,
        at_end: ExpandError,
    ) -> Result<String, ExpandError> {
        match self.process_stop_on(Some(stop), raw_escapes) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.at_end() => Err(at_end),
            Err(e) => Err(e),
        }
    }

    /// A name: letters, digits and `_`; or all the digits of a positional
    /// parameter; or one special parameter character.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(d) = self.peek().filter(|c| is_digit(*c)) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.pos += 1;
                return ch.to_string();
            }
            if !is_letter(ch) && !is_digit(ch) && ch != '_' {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        let value = (self.env)(name);
        let set = if value.is_some() {
            &mut self.matched
        } else {
            &mut self.unmatched
        };
        if !set.contains(name) {
            set.insert(name.to_string());
        }
        value
    }
}

/// `${NAME?message}` (unset is an error) and `${NAME:?message}` (empty
/// too).
fn required(
    name: &str,
    value: Option<String>,
    colon: bool,
    word: String,
) -> Result<String, ExpandError> {
    let default = match value {
        Some(v) if !(colon && v.is_empty()) => return Ok(v),
        Some(_) => "is not allowed to be empty",
        None => "is not allowed to be unset",
    };
    let message = if word.is_empty() {
        default.to_string()
    } else {
        word
    };
    Err(ExpandError::Required {
        name: name.to_string(),
        message,
    })
}

fn invalid_pattern(pattern: &str, reason: String) -> ExpandError {
    ExpandError::InvalidPattern {
        pattern: pattern.to_string(),
        reason,
    }
}

/// `${NAME#pattern}` (shortest) and `${NAME##pattern}` (longest): the
/// value without the part the pattern matches at its start.
fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandError> {
    let prog = Program::shell_glob(pattern, greedy).map_err(|r| invalid_pattern(pattern, r))?;
    let chars: Vec<char> = value.chars().collect();
    Ok(match prog.find(&chars, 0, true) {
        Some((_, end)) => chars.get(end..).unwrap_or_default().iter().collect(),
        None => value.to_string(),
    })
}

/// `${NAME%pattern}` and `${NAME%%pattern}`: as BuildKit does, the value
/// and the pattern are reversed and the prefix is trimmed.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandError> {
    let reversed_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed_value, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern, keeping each `\x` pair in order (`a\*c` becomes
/// `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens: Vec<&[char]> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let len = if chars[i] == '\\' && i + 1 < chars.len() {
            2
        } else {
            1
        };
        tokens.push(&chars[i..i + len]);
        i += len;
    }
    tokens.iter().rev().flat_map(|t| t.iter()).collect()
}

fn replace_first(prog: &Program, value: &[char], replacement: &str) -> String {
    let Some((start, end)) = prog.find(value, 0, false) else {
        return value.iter().collect();
    };
    let mut out: String = value.get(..start).unwrap_or_default().iter().collect();
    out.push_str(replacement);
    out.extend(value.get(end..).unwrap_or_default());
    out
}

/// Go's `Regexp.ReplaceAllString`: every leftmost-first match, an empty
/// match right after a match is not replaced, and `$0`/`${0}` in the
/// replacement stand for the match (`$$` for `$`; other `$name`s, which
/// name no group, for nothing).
fn replace_all(prog: &Program, value: &[char], replacement: &str) -> Result<String, ExpandError> {
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= value.len() {
        let Some((start, end)) = prog.find(value, search, false) else {
            break;
        };
        out.extend(value.get(last_end..start).unwrap_or_default());
        if end > last_end || start == 0 {
            let matched: String = value.get(start..end).unwrap_or_default().iter().collect();
            expand_template(replacement, &matched, &mut out);
        }
        if out.len() > MAX_EXPANSION {
            return Err(ExpandError::TooLong(MAX_EXPANSION));
        }
        last_end = end;
        let width = usize::from(search < value.len());
        search = if search + width > end {
            search + width
        } else if search + 1 > end {
            search + 1
        } else {
            end
        };
    }
    out.extend(value.get(last_end..).unwrap_or_default());
    Ok(out)
}

/// Go's `Regexp.Expand` for a pattern without groups.
fn expand_template(template: &str, matched: &str, out: &mut String) {
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_name(rest) {
            Some((name, after)) => {
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// The `name` or `{name}` after a `$` in a replacement, and what follows.
fn template_name(s: &str) -> Option<(&str, &str)> {
    let (brace, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let end = body
        .char_indices()
        .find(|&(_, c)| !(is_letter(c) || is_digit(c) || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let (name, mut after) = body.split_at(end);
    if brace {
        after = after.strip_prefix('}')?;
    }
    Some((name, after))
}

/// One instruction of a compiled glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inst {
    /// This character.
    Char(char),
    /// Any character but a newline.
    Any,
    /// Try the first, then the second.
    Split(usize, usize),
    Jmp(usize),
    Match,
}

/// A glob compiled for a Pike VM: leftmost-first (Perl, and Go's regexp)
/// semantics, with greedy or lazy stars, in O(value × pattern) time.
#[derive(Debug, Clone)]
struct Program {
    insts: Vec<Inst>,
}

/// One element of a shell glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Lit(char),
    AnyChar,
    Star,
}

/// Reads a glob as BuildKit's `convertShellPatternToRegex` does: `*`,
/// `?`, `\*`, `\?`, `\\`, and `\}` / `\/` (the backslash dropped); any
/// other escape is an error.
fn parse_shell_glob(pattern: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let piece = match c {
            '*' => Piece::Star,
            '?' => Piece::AnyChar,
            '\\' if matches!(chars.peek(), Some('}' | '/')) => continue,
            '\\' => match chars.next() {
                Some(e @ ('*' | '?' | '\\')) => Piece::Lit(e),
                Some(e) => return Err(format!("invalid escape '\\{e}'")),
                None => return Err("invalid escape '\\' at the end".to_string()),
            },
            c => Piece::Lit(c),
        };
        pieces.push(piece);
    }
    Ok(pieces)
}

impl Program {
    /// Compiles a shell glob; `greedy` makes `*` match as much as it can.
    fn shell_glob(pattern: &str, greedy: bool) -> Result<Program, String> {
        let pieces = parse_shell_glob(pattern)?;
        let mut insts = Vec::with_capacity(pieces.len() * 3 + 1);
        for p in pieces {
            match p {
                Piece::Lit(c) => insts.push(Inst::Char(c)),
                Piece::AnyChar => insts.push(Inst::Any),
                Piece::Star => {
                    let split = insts.len();
                    let (body, out) = (split + 1, split + 3);
                    insts.push(if greedy {
                        Inst::Split(body, out)
                    } else {
                        Inst::Split(out, body)
                    });
                    insts.push(Inst::Any);
                    insts.push(Inst::Jmp(split));
                }
            }
        }
        insts.push(Inst::Match);
        Ok(Program { insts })
    }

    /// The leftmost-first match starting at or after `from` (exactly at
    /// `from` when `anchored`), as (start, end) character offsets.
    fn find(&self, hay: &[char], from: usize, anchored: bool) -> Option<(usize, usize)> {
        let n = self.insts.len();
        // seen[pc] == pos + 1: pc already has a thread at position pos.
        let mut seen = vec![0usize; n];
        let mut clist: Vec<(usize, usize)> = Vec::new();
        let mut nlist: Vec<(usize, usize)> = Vec::new();
        let mut stack: Vec<usize> = Vec::new();
        let mut best = None;
        let mut pos = from;
        while pos <= hay.len() {
            if best.is_none() && (!anchored || pos == from) {
                self.add_thread(&mut clist, &mut seen, &mut stack, pos, 0, pos);
            }
            if clist.is_empty() {
                if best.is_some() || anchored {
                    break;
                }
                pos += 1;
                continue;
            }
            let c = hay.get(pos).copied();
            for &(pc, start) in &clist {
                let next = match self.insts.get(pc) {
                    Some(Inst::Char(x)) => c == Some(*x),
                    Some(Inst::Any) => c.is_some_and(|c| c != '\n'),
                    Some(Inst::Match) => {
                        best = Some((start, pos));
                        // Threads after this one have lower priority.
                        break;
                    }
                    _ => false,
                };
                if next {
                    self.add_thread(&mut nlist, &mut seen, &mut stack, pos + 1, pc + 1, start);
                }
            }
            std::mem::swap(&mut clist, &mut nlist);
            nlist.clear();
            pos += 1;
        }
        best
    }

    /// Adds the thread at `pc0` and everything it reaches without reading
    /// a character, in priority order (an explicit stack, no recursion).
    fn add_thread(
        &self,
        list: &mut Vec<(usize, usize)>,
        seen: &mut [usize],
        stack: &mut Vec<usize>,
        pos: usize,
        pc0: usize,
        start: usize,
    ) {
        stack.clear();
        stack.push(pc0);
        while let Some(pc) = stack.pop() {
            let Some(mark) = seen.get_mut(pc) else {
                continue;
            };
            if *mark == pos + 1 {
                continue;
            }
            *mark = pos + 1;
            match self.insts.get(pc) {
                Some(Inst::Jmp(x)) => stack.push(*x),
                Some(Inst::Split(x, y)) => {
                    stack.push(*y);
                    stack.push(*x);
                }
                Some(_) => list.push((pc, start)),
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn lookup(map: &BTreeMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
        move |k: &str| map.get(k).cloned()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expand(word: &str, pairs: &[(&str, &str)]) -> Result<String, ExpandError> {
        let m = map(pairs);
        let get = lookup(&m);
        Lexer::new('\\').process_word(word, &get)
    }

    /// BuildKit's envVarTest: `PLATFORM|input|expected`, where PLATFORM is
    /// A (all), U (Unix) or W (Windows), and `error` means an error.
    #[test]
    fn buildkit_env_var_table() {
        let table = include_str!("testdata/envVarTest");
        let env = env_map(["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="]);
        let lex = Lexer::new('\\');
        let (mut ran, mut windows_only, mut failures) = (0, 0, Vec::new());
        for (n, line) in table.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let cols: Vec<&str> = line.split('|').collect();
            let [platform, input, expected] = cols[..] else {
                failures.push(format!("line {}: not three columns: {line:?}", n + 1));
                continue;
            };
            let (input, expected) = (input.trim(), expected.trim());
            match platform.trim() {
                "A" | "U" => {}
                "W" => {
                    windows_only += 1;
                    continue;
                }
                p => {
                    failures.push(format!("line {}: bad platform {p:?}", n + 1));
                    continue;
                }
            }
            ran += 1;
            let got = lex.process_word(input, &lookup(&env));
            let ok = match &got {
                Err(_) => expected == "error",
                Ok(w) => expected != "error" && w == expected,
            };
            if !ok {
                failures.push(format!(
                    "line {}: {input:?}: expected {expected:?}, got {got:?}",
                    n + 1
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(ran, 228, "rows run");
        assert_eq!(windows_only, 2, "Windows rows skipped");
    }

    /// BuildKit's wordsTest: `ENV k=v` lines add to the environment;
    /// `input | w1,w2,...` (or `error`) checks `process_words`.
    #[test]
    fn buildkit_words_table() {
        let table = include_str!("testdata/wordsTest");
        assert!(
            table.lines().any(|l| l == "ENV trailing=ab c   ")
                && table.lines().any(|l| l.ends_with("| hello there  ")),
            "wordsTest lost its significant trailing spaces"
        );
        let lex = Lexer::new('\\');
        let mut env: Vec<String> = Vec::new();
        let (mut ran, mut failures) = (0, Vec::new());
        for (n, line) in table.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            if let Some(e) = line.strip_prefix("ENV ") {
                env.push(e.trim_start_matches(' ').to_string());
                continue;
            }
            let cols: Vec<&str> = line.split('|').collect();
            let [input, expected] = cols[..] else {
                failures.push(format!("line {}: not two columns: {line:?}", n + 1));
                continue;
            };
            ran += 1;
            let input = input.trim();
            let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
            let m = env_map(&env);
            let got = lex
                .process_words(input, &lookup(&m))
                .unwrap_or_else(|_| vec!["error".to_string()]);
            if got != expected {
                failures.push(format!(
                    "line {}: {input:?}: expected {expected:?}, got {got:?}",
                    n + 1
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(ran, 24, "rows run");
    }

    #[test]
    fn mandatory_env_vars() {
        let set = [("VAR", "plain"), ("ARG", "x")];
        let empty = [("VAR", ""), ("ARG", "x")];
        let unset = [("ARG", "x")];
        let no_empty = "${VAR:?message here$ARG}";
        let no_unset = "${VAR?message here$ARG}";
        let herex =
            |r: Result<String, ExpandError>| r.unwrap_err().to_string().contains("message herex");

        assert_eq!(expand(no_empty, &set).unwrap(), "plain");
        assert!(herex(expand(no_empty, &empty)));
        assert!(herex(expand(no_empty, &unset)));

        assert_eq!(expand(no_unset, &set).unwrap(), "plain");
        assert_eq!(expand(no_unset, &empty).unwrap(), "");
        assert!(herex(expand(no_unset, &unset)));
    }

    #[test]
    fn default_messages() {
        assert_eq!(
            expand("${VAR:?}", &[]).unwrap_err().to_string(),
            "VAR: is not allowed to be unset"
        );
        assert_eq!(
            expand("${VAR:?}", &[("VAR", "")]).unwrap_err().to_string(),
            "VAR: is not allowed to be empty"
        );
        assert_eq!(
            expand("${VAR?}", &[]).unwrap_err().to_string(),
            "VAR: is not allowed to be unset"
        );
        assert_eq!(expand("${VAR", &[]), Err(ExpandError::MissingBrace));
        assert_eq!(expand("${", &[]), Err(ExpandError::MissingBrace));
        assert_eq!(expand("${}", &[]), Err(ExpandError::BadSubstitution));
        assert_eq!(expand("${V/a", &[]), Err(ExpandError::MissingSlash));
        assert_eq!(
            expand("${V:=x}", &[]).unwrap_err().to_string(),
            "unsupported modifier (:=) in substitution"
        );
        assert_eq!(
            expand("${V#\\x}", &[("V", "a")]).unwrap_err().to_string(),
            "invalid pattern (\\x) in substitution: invalid escape '\\x'"
        );
        assert_eq!(expand("'a", &[]), Err(ExpandError::UnterminatedSingleQuote));
        assert_eq!(
            expand("\"a", &[]),
            Err(ExpandError::UnterminatedDoubleQuote)
        );
    }

    #[test]
    fn env_map_last_wins_and_bare_keys() {
        let get = |entries: &[&str], k: &str| env_map(entries).get(k).cloned();
        assert_eq!(get(&[], "foo"), None);
        assert_eq!(get(&["foo"], "foo").as_deref(), Some(""));
        assert_eq!(get(&["foo="], "foo").as_deref(), Some(""));
        assert_eq!(get(&["foo=bar"], "foo").as_deref(), Some("bar"));
        assert_eq!(get(&["foo=bar", "car=hat"], "foo").as_deref(), Some("bar"));
        assert_eq!(get(&["foo=bar", "car=hat"], "car").as_deref(), Some("hat"));
        let last = ["foo=bar", "car=hat", "car=bike"];
        assert_eq!(get(&last, "car").as_deref(), Some("bike"));
        assert_eq!(get(&["a=b=c"], "a").as_deref(), Some("b=c"));
    }

    /// BuildKit's TestProcessWithMatches: input, environment, expected
    /// result (None: an error), names set, names unset.
    type MatchCase = (
        &'static str,
        &'static [(&'static str, &'static str)],
        Option<&'static str>,
        &'static [&'static str],
        &'static [&'static str],
    );

    const XB: &[(&str, &str)] = &[("FOO", "xxx"), ("BAR", "")];

    const MATCH_CASES: &[MatchCase] = &[
        ("x", &[("DUMMY", "dummy")], Some("x"), &[], &[]),
        (
            "x ${UNUSED}",
            &[("DUMMY", "dummy")],
            Some("x "),
            &[],
            &["UNUSED"],
        ),
        ("x ${FOO}", &[("FOO", "y")], Some("x y"), &["FOO"], &[]),
        (
            "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
            XB,
            Some("xxx  ccc"),
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        (
            "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
            XB,
            Some("xxx bbb ccc"),
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        ("${FOO:-}", XB, Some("xxx"), &["FOO"], &[]),
        ("${FOO:-}", &[], Some(""), &[], &["FOO"]),
        (
            "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
            XB,
            Some("aaa bbb "),
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        (
            "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
            XB,
            Some("aaa  "),
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        ("${FOO?aaa}", XB, Some("xxx"), &["FOO"], &[]),
        ("${BAR?bbb}", XB, Some(""), &["BAR"], &[]),
        ("${BAZ?ccc}", XB, None, &[], &["BAZ"]),
        ("${FOO:?aaa}", XB, Some("xxx"), &["FOO"], &[]),
        ("${BAR:?bbb}", XB, None, &[], &[]),
        ("${BAZ:?ccc}", XB, None, &[], &["BAZ"]),
        ("${BAZ:?}", XB, None, &[], &["BAZ"]),
        ("${FOO=aaa}", XB, None, &[], &[]),
        ("${FOO=:aaa}", XB, None, &[], &[]),
        ("${FOO=}", &[], None, &[], &[]),
        // Regexp specials are literal; `\}` keeps `}` from closing.
        (
            "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
            &[("FOO", "()[]{}^$.*?|\\x")],
            Some("x"),
            &["FOO"],
            &[],
        ),
        (
            "${FOO%%\\**}",
            &[("FOO", "xx**")],
            Some("xx"),
            &["FOO"],
            &[],
        ),
        ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y"), &["FOO"], &[]),
        ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        (
            "${FOO#$BAR}",
            &[("FOO", "xxyy"), ("BAR", "x")],
            Some("xyy"),
            &["FOO", "BAR"],
            &[],
        ),
        (
            "${FOO#$BAR}",
            &[("FOO", "xxyy"), ("BAR", "")],
            Some("xxyy"),
            &["FOO", "BAR"],
            &[],
        ),
        ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy"), &["FOO"], &[]),
        ("${FOO##}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO#?\\?}", &[("FOO", "???y")], Some("?y"), &["FOO"], &[]),
        (
            "${ABC:-.}${FOO%x}${ABC:-.}",
            &[("FOO", "xxyy")],
            Some(".xxyy."),
            &["FOO"],
            &["ABC"],
        ),
        (
            "${FOO%%\\**\\*}",
            &[("FOO", "a***yy*")],
            Some("a"),
            &["FOO"],
            &[],
        ),
        ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        (
            "${FOO%%$BAR}",
            &[("FOO", "xxyy"), ("BAR", "")],
            Some("xxyy"),
            &["FOO", "BAR"],
            &[],
        ),
        ("${FOO:#}", &[], None, &[], &[]),
        ("${FOO:##}", &[], None, &[], &[]),
        ("${FOO:%}", &[], None, &[], &[]),
        ("${FOO:%%}", &[], None, &[], &[]),
        // Wildcards.
        (
            "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
            &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
            Some("/foo.*/*.txt - /foo..*.txt"),
            &["FOO", "NEEDLE"],
            &[],
        ),
        // `/` in patterns.
        (
            "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
            &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
            Some("/tmp/bar.txt - /bar.txt"),
            &["FOO", "NEEDLE"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
            &[
                ("FOO", "/a/foo/b/c.txt"),
                ("NEEDLE", "/?/"),
                ("REPLACEMENT", "/"),
            ],
            Some("/foo/b/c.txt - /foo/c.txt"),
            &["FOO", "NEEDLE", "REPLACEMENT"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/$REPLACEMENT}",
            &[
                ("FOO", "http://google.de"),
                ("NEEDLE", "http://"),
                ("REPLACEMENT", "https://"),
            ],
            Some("https://google.de"),
            &["FOO", "NEEDLE", "REPLACEMENT"],
            &[],
        ),
        // Escaped separators.
        (
            "${FOO//\\//\\/}",
            &[("FOO", "/tmp/foo.txt")],
            Some("\\/tmp\\/foo.txt"),
            &["FOO"],
            &[],
        ),
        // Partial input BuildKit only promises not to crash on.
        (
            "${FOO/$BAR/ww}",
            &[("FOO", "xxyy"), ("BAR", "")],
            Some("wwxxyy"),
            &["FOO", "BAR"],
            &[],
        ),
        ("${FOO//ww}", &[("FOO", "xxyy")], None, &[], &[]),
        ("${FOO//}", &[("FOO", "xxyy")], None, &[], &[]),
        ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO///}", &[], Some(""), &[], &["FOO"]),
    ];

    #[test]
    fn buildkit_process_with_matches_table() {
        let lex = Lexer::new('\\');
        let mut failures = Vec::new();
        for (input, env, expected, matched, unmatched) in MATCH_CASES {
            let m = map(env);
            let got = lex.process(input, &lookup(&m));
            let ok = match (&got, expected) {
                (Err(_), None) => true,
                (Ok(e), Some(want)) => {
                    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
                    e.word == *want && e.matched == set(matched) && e.unmatched == set(unmatched)
                }
                _ => false,
            };
            if !ok {
                failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(MATCH_CASES.len(), 47);
    }

    #[test]
    fn process_word_with_matches_returns_set_names() {
        let m = map(&[("A", "1"), ("B", "")]);
        let (w, names) = Lexer::new('\\')
            .process_word_with_matches("$A-${B}-${C:-c}", &lookup(&m))
            .unwrap();
        assert_eq!(w, "1--c");
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["A", "B"]);
    }

    #[test]
    fn release_file_name() {
        let word = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
        let base = [("VERSION", "v1.2.3"), ("TARGETOS", "linux")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut env = base.to_vec();
            env.extend_from_slice(extra);
            expand(word, &env).unwrap()
        };
        assert_eq!(
            with(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v7")]),
            "something-v1.2.3.linux-arm-v7.tar.gz"
        );
        assert_eq!(
            with(&[("TARGETARCH", "arm64"), ("TARGETVARIANT", "")]),
            "something-v1.2.3.linux-arm64.tar.gz"
        );
        assert_eq!(
            with(&[("TARGETARCH", "arm64")]),
            "something-v1.2.3.linux-arm64.tar.gz"
        );
    }

    /// BuildKit's TestConvertShellPatternToRegex, as matching: the valid
    /// patterns match their literal text, the invalid ones are errors.
    #[test]
    fn shell_glob_escapes() {
        let lit = |p: &str, text: &str| {
            let prog = Program::shell_glob(p, true).unwrap();
            let chars: Vec<char> = text.chars().collect();
            prog.find(&chars, 0, true) == Some((0, chars.len()))
        };
        assert!(lit("*", "anything"));
        assert!(lit("?", "x"));
        assert!(lit("\\*", "*"));
        assert!(!lit("\\*", "x"));
        assert!(lit("(()[]{\\}^$.\\*\\?|\\\\", "(()[]{}^$.*?|\\"));
        for bad in ["\\", "\\x", "\\\\\\"] {
            assert!(Program::shell_glob(bad, true).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reverse_pattern_keeps_escape_pairs() {
        let cases = [
            ("a\\*c", "c\\*a"),
            ("\\\\\\ab", "b\\a\\\\"),
            ("ab\\", "\\ba"),
            ("👽\\🚀🖖", "🖖\\🚀👽"),
            ("\\\\b", "b\\\\"),
        ];
        for (pattern, want) in cases {
            assert_eq!(reverse_pattern(pattern), want, "{pattern:?}");
        }
        let rev: String = "🖖🚀👽".chars().rev().collect();
        assert_eq!(rev, "👽🚀🖖");
    }

    #[test]
    fn prefix_suffix_and_substitution() {
        let v = [("V", "foo.tar.gz"), ("P", "/usr/local/bin/app")];
        let cases = [
            ("${V#*.}", "tar.gz"),
            ("${V##*.}", "gz"),
            ("${V%.*}", "foo.tar"),
            ("${V%%.*}", "foo"),
            ("${P##*/}", "app"),
            ("${P%/*}", "/usr/local/bin"),
            ("${V/./-}", "foo-tar.gz"),
            ("${V//./-}", "foo-tar-gz"),
            ("${V//?/x}", "xxxxxxxxxx"),
            ("${V/#/x}", "foo.tar.gz"),
            ("${V//o/[$0]}", "f[][].tar.gz"),
            ("${V%\"gz\"}", "foo.tar."),
            ("${V#'foo'}", ".tar.gz"),
            ("${NONE#x}", ""),
            ("${NONE/x/y}", ""),
        ];
        for (word, want) in cases {
            assert_eq!(expand(word, &v).unwrap(), want, "{word:?}");
        }
    }

    #[test]
    fn replace_all_follows_go() {
        // An empty pattern matches between every character.
        assert_eq!(expand("${V///-}", &[("V", "ab")]).unwrap(), "-a-b-");
        // `$0` in the replacement is the match, `$$` a dollar, other
        // names nothing, malformed ones literal.
        let env = [("V", "abc"), ("R", "<$0|$$|$1|${0}|$x|${|$.>")];
        assert_eq!(expand("${V//b/$R}", &env).unwrap(), "a<b|$||b||${|$.>c");
        // The first replacement is literal.
        assert_eq!(
            expand("${V/b/$R}", &env).unwrap(),
            "a<$0|$$|$1|${0}|$x|${|$.>c"
        );
        // `*` is greedy and does not cross a newline.
        assert_eq!(expand("${V//a*/x}", &[("V", "ab\nab")]).unwrap(), "x\nx");
    }

    #[test]
    fn backtick_escape() {
        let lex = Lexer::new('`');
        let env = map(&[("PWD", "/home")]);
        let cases = [
            ("he`$PWD", "he$PWD"),
            ("C:\\path\\$PWD", "C:\\path\\/home"),
            ("\"a`\"b\"", "a\"b"),
            ("\"a``b\"", "a`b"),
            ("\"a`b\"", "a`b"),
            ("a``b", "a`b"),
            ("a`", "a"),
            ("'a`b'", "a`b"),
            ("${X:-`}}", "}"),
        ];
        for (word, want) in cases {
            assert_eq!(
                lex.process_word(word, &lookup(&env)).unwrap(),
                want,
                "{word:?}"
            );
        }
        assert_eq!(
            lex.process_words("a` b c", &lookup(&env)).unwrap(),
            ["a b", "c"]
        );
    }

    #[test]
    fn raw_and_skip_options() {
        let mut lex = Lexer::new('\\');
        lex.raw_quotes = true;
        lex.skip_unset_env = true;
        let env = map(&[("SET", "v")]);
        let get = lookup(&env);
        assert_eq!(
            lex.process_word("\"$SET\" '$X' $X ${X} ${X:-d} ${X//a/b} ${SET:-d}", &get)
                .unwrap(),
            "\"v\" '$X' $X ${X} ${X:-d} ${X//a/b} v"
        );
        let mut lex = Lexer::new('\\');
        lex.raw_escapes = true;
        assert_eq!(
            lex.process_word("a\\ b\\$SET", &get).unwrap(),
            "a\\ b\\$SET"
        );
        let mut lex = Lexer::new('\\');
        lex.skip_process_quotes = true;
        assert_eq!(lex.process_word("'$SET' \"x", &get).unwrap(), "'v' \"x");
    }

    #[test]
    fn words_keep_text_around_nested_defaults() {
        let lex = Lexer::new('\\');
        let none = |_: &str| None;
        assert_eq!(
            lex.process_words("ab${X:-c d}e f", &none).unwrap(),
            ["abc", "de", "f"]
        );
        assert_eq!(lex.process_words("\"\" x", &none).unwrap(), ["x"]);
        assert!(lex.process_words("", &none).unwrap().is_empty());
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        assert_eq!(expand("\u{feff}$A", &[("A", "a")]).unwrap(), "a");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let word = "${A:-".repeat(100_000);
        assert_eq!(expand(&word, &[]), Err(ExpandError::TooDeep(MAX_NESTING)));
        let word = "\"${A:-".repeat(100_000);
        assert_eq!(expand(&word, &[]), Err(ExpandError::TooDeep(MAX_NESTING)));
        let ok = format!("{}x{}", "${A:-".repeat(100), "}".repeat(100));
        assert_eq!(expand(&ok, &[]).unwrap(), "x");
    }

    #[test]
    fn adversarial_globs_finish() {
        let value = "a".repeat(3000);
        let env = [("V", value.as_str())];
        let pattern = "*a".repeat(40) + "b";
        for op in ["#", "##", "%", "%%"] {
            let word = format!("${{V{op}{pattern}}}");
            assert_eq!(expand(&word, &env).unwrap(), value, "{op}");
        }
        let word = format!("${{V//{pattern}/x}}");
        assert_eq!(expand(&word, &env).unwrap(), value);
        let word = format!("${{V/{}/x}}", "*a".repeat(40));
        assert_eq!(expand(&word, &env).unwrap(), "x");
        let stars = "*".repeat(2000);
        let word = format!("${{V##{stars}b}}");
        assert_eq!(expand(&word, &env).unwrap(), value);
    }

    #[test]
    fn replacement_size_is_bounded() {
        let value = "a".repeat(5000);
        let env = [("V", value.as_str())];
        let word = "${V//?/${V//?/$V}}";
        assert_eq!(expand(word, &env), Err(ExpandError::TooLong(MAX_EXPANSION)));
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let lex = Lexer::new('\\');
        let env = map(&[("A", "a\nb"), ("E", "")]);
        let get = lookup(&env);
        for word in [
            "$",
            "${",
            "${A",
            "${A:",
            "${A:-",
            "${A/",
            "${A//",
            "${A/x",
            "${A/x/",
            "${A#",
            "${A%%",
            "\\",
            "\"\\",
            "'",
            "${A:-\"",
            "${A/\\",
            "${A#\\",
            "${#}",
            "${#A}",
            "${+x}",
            "${-x}",
            "$\u{1F600}",
            "${\u{1F600}}",
            "${A:?",
            "${A?",
            "${A//\\}/x}",
            "${A%\\}}",
            "$$$$",
            "${1a}",
        ] {
            let _ = lex.process(word, &get);
            let _ = lex.process(&format!("\"{word}"), &get);
        }
    }
}
