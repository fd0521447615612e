//! `.dockerignore`: reading the file ([`read_dockerignore`], as moby's
//! `ignorefile.ReadAll`) and matching paths of the build context against
//! its patterns ([`Matcher`], as moby's `patternmatcher`).
//!
//! Pattern syntax is Go's `filepath.Match` (`*` and `?` do not match `/`,
//! `[a-z]` / `[^a-z]` classes, `\` escapes the next character) plus `**`,
//! which matches any number of directories (also none). A pattern with a
//! leading `!` is an exception: it re-includes what earlier patterns
//! excluded. The last pattern that matches a path decides; a pattern that
//! matches a directory also matches everything under it.
//!
//! moby compiles each pattern to a Go regular expression; here a small
//! automaton matches it in time proportional to the path's length times
//! the pattern's, however many stars it has. Where that regular expression
//! does something `filepath.Match` would not, this follows
//! `filepath.Match`: an escaped letter is that letter (moby's regexp reads
//! `\d` as a digit class, `\n` as a newline), `*` and `?` inside brackets
//! are literal, and `^` outside brackets is an ordinary character. A
//! bracket range that runs backwards (`[z-a]`), which moby's regexp
//! rejects when the pattern is first used, is an error of
//! [`Matcher::new`] here.

/// Patterns from a .dockerignore file, as moby's `ignorefile.ReadAll` reads
/// them: a byte order mark at the start is dropped; lines starting with `#`
/// are comments; every other line is trimmed of whitespace, skipped if
/// empty, and cleaned like Go's `filepath.Clean` (`a/../b` is `b`, `a//b/`
/// is `a/b`), with one leading `/` removed (patterns are relative to the
/// context) and a leading `!` kept in front (`! /a` is `!a`).
pub fn read_dockerignore(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('#') {
            continue;
        }
        let pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        out.push(normalize_line(pattern));
    }
    out
}

/// One trimmed, non-empty line of a .dockerignore, normalized.
fn normalize_line(pattern: &str) -> String {
    let (invert, rest) = match pattern.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, pattern),
    };
    let mut cleaned = String::new();
    if !rest.is_empty() {
        cleaned = clean(rest);
        if cleaned.len() > 1 && cleaned.starts_with('/') {
            cleaned.remove(0);
        }
    }
    if invert {
        cleaned.insert(0, '!');
    }
    cleaned
}

/// Go's `path.Clean`: the shortest equivalent path, by purely lexical
/// processing (`.` and empty elements removed, `..` cancelling the element
/// before it, `..` at the root dropped); `.` for an empty result.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for elem in path.split('/') {
        match elem {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            e => parts.push(e),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Go's `path.Dir`: all but the last element, cleaned.
fn dir(path: &str) -> String {
    match path.rfind('/') {
        Some(at) => clean(&path[..=at]),
        None => ".".to_string(),
    }
}

/// Why a pattern was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    /// A pattern that is only `!`.
    #[error("illegal exclusion pattern: \"!\"")]
    LoneExclamation,
    /// A pattern `filepath.Match` (or moby's matcher) would refuse: an
    /// unterminated `[`, a bad range, a trailing `\`.
    #[error("syntax error in pattern {pattern:?}: {reason}")]
    Syntax {
        /// The pattern, as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Docker's pattern matcher (moby/patternmatcher): Go filepath.Match syntax
/// plus `**`, `!` exclusions, last match wins.
#[derive(Debug, Clone)]
pub struct Matcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

/// One compiled pattern.
#[derive(Debug, Clone)]
struct Pattern {
    /// The pattern as cleaned (without its `!`).
    text: String,
    exclusion: bool,
    kind: Kind,
}

/// How moby matches a pattern: it recognizes three plain shapes and
/// compiles the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// No wildcards: the path is the pattern.
    Exact,
    /// `literal/**`: the path starts with the literal part.
    Prefix(String),
    /// `**literal`: the path ends with the literal part (or, for
    /// `**/name`, is `name`).
    Suffix(String),
    /// Anything else.
    Glob(Vec<Tok>),
}

/// One element of a compiled pattern (the regexp moby would build).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: one character but `/`.
    AnyNotSep,
    /// `*`: any characters but `/`.
    StarNotSep,
    /// `**/` (or `**` before more pattern): `(.*/)?`.
    Dirs,
    /// `**` at the end of a pattern that is not plain: `.*`.
    Rest,
    Class(Class),
}

/// `[...]`: ranges of characters, maybe negated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

impl Matcher {
    /// Compiles patterns as moby's `patternmatcher.New` does: each is
    /// trimmed and cleaned, empty ones are skipped, a leading `!` makes an
    /// exception.
    ///
    /// # Errors
    ///
    /// A pattern that is only `!`, or that has bad syntax (an unterminated
    /// `[`, a bad range, a trailing `\`), is an error naming it.
    pub fn new(patterns: &[String]) -> Result<Matcher, PatternError> {
        let mut out = Vec::with_capacity(patterns.len());
        for p in patterns {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            out.push(Pattern::new(&clean(p))?);
        }
        let exclusions = out.iter().any(|p| p.exclusion);
        Ok(Matcher {
            patterns: out,
            exclusions,
        })
    }

    /// Whether `path` (relative to the context root, '/'-separated, no
    /// leading "./") is excluded, considering its parent directories as
    /// moby's `MatchesOrParentMatches` does: a pattern that matches one of
    /// the path's parents matches the path.
    pub fn matches(&self, path: &str) -> bool {
        let parents = Parents::of(path);
        let mut matched = false;
        for p in &self.patterns {
            // Only an inclusion can change an unmatched path, only an
            // exclusion a matched one.
            if p.exclusion != matched {
                continue;
            }
            if p.hits(path, &parents) {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether `path` itself is excluded, without looking at its parents
    /// (moby's `MatchesExact`).
    pub fn matches_exact(&self, path: &str) -> bool {
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            if p.matches(path) {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether any pattern is an exclusion (`!`): then a matched directory
    /// must still be walked.
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    /// The patterns as compiled (cleaned, without `!`), each with whether
    /// it is an exception.
    pub fn patterns(&self) -> impl Iterator<Item = (&str, bool)> {
        self.patterns.iter().map(|p| (p.text.as_str(), p.exclusion))
    }

    /// For walking: whether the directory `dir` is excluded together with
    /// everything under it, so that the walk need not enter it.
    ///
    /// The last pattern that matches a path decides, and a pattern that
    /// matches `dir` (or a parent) matches everything under it. So when
    /// `dir` is excluded by inclusion pattern k, a path under it can only
    /// come back through an exception after k that matches something under
    /// `dir`. This answers `true` only when no such exception can match any
    /// path that starts with `dir/`: a conservative but exact-enough test
    /// (an exception like `!**/keep` keeps every directory walkable).
    pub fn can_skip_dir(&self, dir: &str) -> bool {
        let parents = Parents::of(dir);
        let last = self
            .patterns
            .iter()
            .enumerate()
            .rev()
            .find(|(_, p)| p.hits(dir, &parents));
        let Some((k, p)) = last else {
            return false;
        };
        if p.exclusion {
            return false;
        }
        let under = format!("{dir}/");
        self.patterns
            .get(k + 1..)
            .unwrap_or_default()
            .iter()
            .filter(|p| p.exclusion)
            .all(|p| !p.could_match_under(&under))
    }
}

/// The parent directories of a path the way `MatchesOrParentMatches`
/// tries them: `filepath.Dir(path)` split at `/`, each leading run of
/// elements joined again (for `a/b/c`: `a`, `a/b`).
struct Parents {
    dir: String,
    ends: Vec<usize>,
}

impl Parents {
    fn of(path: &str) -> Parents {
        let dir = dir(path);
        let mut ends = Vec::new();
        if dir != "." {
            ends.extend(dir.match_indices('/').map(|(at, _)| at));
            ends.push(dir.len());
        }
        Parents { dir, ends }
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        self.ends.iter().filter_map(|&end| self.dir.get(..end))
    }
}

impl Pattern {
    /// A cleaned pattern, with its `!` if any.
    fn new(cleaned: &str) -> Result<Pattern, PatternError> {
        let (exclusion, text) = match cleaned.strip_prefix('!') {
            Some("") => return Err(PatternError::LoneExclamation),
            Some(rest) => (true, rest),
            None => (false, cleaned),
        };
        let syntax = |reason: String| PatternError::Syntax {
            pattern: cleaned.to_string(),
            reason,
        };
        let chars: Vec<char> = text.chars().collect();
        check_syntax(&chars).map_err(syntax)?;
        let kind = compile(text, &chars).map_err(syntax)?;
        Ok(Pattern {
            text: text.to_string(),
            exclusion,
            kind,
        })
    }

    /// Whether the pattern matches the path or one of its parents.
    fn hits(&self, path: &str, parents: &Parents) -> bool {
        self.matches(path) || self.matches_a_parent(parents)
    }

    /// Whether the pattern matches one of the parents. A glob reads the
    /// parent directory once, checking at each `/` (the parents are its
    /// prefixes there), so deep paths cost no more than long ones.
    fn matches_a_parent(&self, parents: &Parents) -> bool {
        let Kind::Glob(toks) = &self.kind else {
            return parents.iter().any(|p| self.matches(p));
        };
        if parents.ends.is_empty() {
            return false;
        }
        let mut state = GlobState::new(toks);
        for c in parents.dir.chars() {
            if c == '/' && state.accepts(toks) {
                return true;
            }
            if !state.step(toks, c) {
                return false;
            }
        }
        state.accepts(toks)
    }

    /// Whether the pattern matches this path exactly.
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            Kind::Glob(toks) => {
                let mut state = GlobState::new(toks);
                path.chars().all(|c| state.step(toks, c)) && state.accepts(toks)
            }
        }
    }

    /// Whether the pattern could match some path that starts with `under`
    /// (a directory with its trailing `/`). Never wrongly `false`.
    fn could_match_under(&self, under: &str) -> bool {
        match &self.kind {
            Kind::Exact => self.text.starts_with(under),
            Kind::Prefix(prefix) => prefix.starts_with(under) || under.starts_with(prefix.as_str()),
            Kind::Suffix(_) => true,
            Kind::Glob(toks) => {
                let mut state = GlobState::new(toks);
                under.chars().all(|c| state.step(toks, c))
            }
        }
    }
}

/// The states of the automaton of a glob: `at[i]` means "token i is next",
/// `inside[i]` means "inside the `.*` of a `(.*/)?` token i". Only
/// `at[toks.len()]` (all matched) accepts.
struct GlobState {
    at: Vec<bool>,
    inside: Vec<bool>,
    next_at: Vec<bool>,
    next_inside: Vec<bool>,
}

impl GlobState {
    fn new(toks: &[Tok]) -> GlobState {
        let n = toks.len();
        let mut s = GlobState {
            at: vec![false; n + 1],
            inside: vec![false; n],
            next_at: vec![false; n + 1],
            next_inside: vec![false; n],
        };
        s.at[0] = true;
        close(toks, &mut s.at);
        s
    }

    fn accepts(&self, toks: &[Tok]) -> bool {
        self.at.get(toks.len()).copied().unwrap_or(false)
    }

    /// Reads one character; `false` when no state is left.
    fn step(&mut self, toks: &[Tok], c: char) -> bool {
        self.next_at.fill(false);
        self.next_inside.fill(false);
        for (i, tok) in toks.iter().enumerate() {
            if self.at[i] {
                self.advance(i, tok, c);
            }
            if self.inside[i] {
                self.advance_dirs(i, c);
            }
        }
        close(toks, &mut self.next_at);
        std::mem::swap(&mut self.at, &mut self.next_at);
        std::mem::swap(&mut self.inside, &mut self.next_inside);
        self.at.iter().chain(self.inside.iter()).any(|&b| b)
    }

    fn advance(&mut self, i: usize, tok: &Tok, c: char) {
        let next = match tok {
            Tok::Lit(x) => c == *x,
            Tok::AnyNotSep => c != '/',
            Tok::Class(class) => class.matches(c),
            Tok::StarNotSep => {
                self.next_at[i] |= c != '/';
                false
            }
            Tok::Rest => {
                self.next_at[i] |= c != '\n';
                false
            }
            Tok::Dirs => {
                self.advance_dirs(i, c);
                false
            }
        };
        self.next_at[i + 1] |= next;
    }

    /// `(.*/)?` reading `c`: the `.*` takes it, or it is the final `/`.
    fn advance_dirs(&mut self, i: usize, c: char) {
        self.next_inside[i] |= c != '\n';
        self.next_at[i + 1] |= c == '/';
    }
}

/// Follows the tokens that may match nothing (`*`, `**`): the automaton's
/// empty moves all go forward, so one pass is enough.
fn close(toks: &[Tok], at: &mut [bool]) {
    for (i, tok) in toks.iter().enumerate() {
        if at[i] && matches!(tok, Tok::StarNotSep | Tok::Dirs | Tok::Rest) {
            at[i + 1] = true;
        }
    }
}

/// Go's `path.Match`: whether `name` matches the shell pattern as a
/// whole (`*` and `?` never match `/`, `[...]` classes, `\\` escapes),
/// as Docker matches `reference` filters. Linear in the name's length for
/// any pattern (an automaton, no backtracking).
///
/// # Errors
///
/// A malformed pattern (an unterminated `[`, a bad range, a trailing
/// `\\`) is an error naming it, as `path.ErrBadPattern`.
pub fn path_match(pattern: &str, name: &str) -> Result<bool, PatternError> {
    let chars: Vec<char> = pattern.chars().collect();
    let syntax = |reason: String| PatternError::Syntax {
        pattern: pattern.to_string(),
        reason,
    };
    check_syntax(&chars).map_err(syntax)?;
    let mut toks = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => toks.push(Tok::StarNotSep),
            '?' => toks.push(Tok::AnyNotSep),
            '[' => {
                let (class, next) = parse_class(&chars, i + 1).map_err(syntax)?;
                toks.push(Tok::Class(class));
                i = next;
                continue;
            }
            '\\' => {
                i += 1;
                toks.push(Tok::Lit(chars[i]));
            }
            c => toks.push(Tok::Lit(c)),
        }
        i += 1;
    }
    let mut state = GlobState::new(&toks);
    Ok(name.chars().all(|c| state.step(&toks, c)) && state.accepts(&toks))
}

/// The syntax check moby gets from calling `filepath.Match(pattern, ".")`:
/// the pattern is cut into chunks at stars outside brackets, and every
/// chunk must be well formed.
fn check_syntax(p: &[char]) -> Result<(), String> {
    let mut rest = p;
    while !rest.is_empty() {
        let start = rest.iter().take_while(|&&c| c == '*').count();
        rest = &rest[start..];
        let end = chunk_end(rest);
        check_chunk(&rest[..end])?;
        rest = &rest[end..];
    }
    Ok(())
}

/// Go's `scanChunk`: where the chunk ends (at a `*` outside brackets).
fn chunk_end(p: &[char]) -> usize {
    let mut in_range = false;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' if i + 1 < p.len() => i += 1,
            '[' => in_range = true,
            ']' => in_range = false,
            '*' if !in_range => return i,
            _ => {}
        }
        i += 1;
    }
    p.len()
}

/// Go's `matchChunk`, for its errors only.
fn check_chunk(chunk: &[char]) -> Result<(), String> {
    let mut i = 0;
    while i < chunk.len() {
        match chunk[i] {
            '[' => i = parse_class(chunk, i + 1)?.1,
            '\\' if i + 1 >= chunk.len() => return Err("trailing backslash".into()),
            '\\' => i += 2,
            _ => i += 1,
        }
    }
    Ok(())
}

/// A bracket expression whose `[` is just before `i`, as `filepath.Match`
/// reads it; returns the class and the index after its `]`.
fn parse_class(p: &[char], mut i: usize) -> Result<(Class, usize), String> {
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if p.get(i) == Some(&']') && !ranges.is_empty() {
            return Ok((Class { negated, ranges }, i + 1));
        }
        let (lo, j) = class_char(p, i)?;
        let (hi, j) = match p.get(j) {
            Some('-') => class_char(p, j + 1)?,
            _ => (lo, j),
        };
        ranges.push((lo, hi));
        i = j;
    }
}

/// Go's `getEsc`: one (maybe escaped) character of a class, which must be
/// followed by more of the pattern.
fn class_char(p: &[char], mut i: usize) -> Result<(char, usize), String> {
    match p.get(i) {
        None => return Err("unterminated '['".into()),
        Some('-') => return Err("'-' where a character was expected in '[...]'".into()),
        Some(']') => return Err("']' where a character was expected in '[...]'".into()),
        Some('\\') => i += 1,
        Some(_) => {}
    }
    let c = *p.get(i).ok_or("unterminated '['")?;
    if i + 1 >= p.len() {
        return Err("unterminated '['".into());
    }
    Ok((c, i + 1))
}

/// Compiles a pattern the way moby's `Pattern.compile` walks it: the
/// pattern's kind starts exact and becomes a prefix match (`dir/**`), a
/// suffix match (`**/name`) or a glob.
fn compile(text: &str, p: &[char]) -> Result<Kind, String> {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Glob,
    }
    let mut detected = Detected::Exact;
    let mut toks = Vec::new();
    let mut literal = String::new();
    let mut i = 0;
    let mut first = true;
    while i < p.len() {
        let c = p[i];
        i += 1;
        match c {
            '*' if p.get(i) == Some(&'*') => {
                i += 1;
                if p.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= p.len() {
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        toks.push(Tok::Rest);
                        detected = Detected::Glob;
                    }
                } else {
                    toks.push(Tok::Dirs);
                    detected = Detected::Glob;
                }
                if first {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                toks.push(Tok::StarNotSep);
                detected = Detected::Glob;
            }
            '?' => {
                toks.push(Tok::AnyNotSep);
                detected = Detected::Glob;
            }
            '\\' => {
                let e = *p.get(i).ok_or("trailing backslash")?;
                i += 1;
                toks.push(Tok::Lit(e));
                detected = Detected::Glob;
            }
            '[' => {
                let (class, next) = parse_class(p, i)?;
                if let Some(&(lo, hi)) = class.ranges.iter().find(|(lo, hi)| lo > hi) {
                    return Err(format!("invalid character class range {lo}-{hi}"));
                }
                toks.push(Tok::Class(class));
                i = next;
                detected = Detected::Glob;
            }
            ']' => {
                toks.push(Tok::Lit(']'));
                detected = Detected::Glob;
            }
            c => {
                // Also the characters moby escapes for its regexp
                // (`.+()|{}$`): literal, and the kind stays exact.
                toks.push(Tok::Lit(c));
                literal.push(c);
            }
        }
        first = false;
    }
    Ok(match detected {
        Detected::Exact => Kind::Exact,
        Detected::Prefix => Kind::Prefix(literal),
        Detected::Suffix => Kind::Suffix(text.get(2..).unwrap_or_default().to_string()),
        Detected::Glob => Kind::Glob(toks),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn matcher(patterns: &[&str]) -> Matcher {
        Matcher::new(&strings(patterns)).unwrap()
    }

    /// moby's package-level `MatchesOrParentMatches(file, patterns)`: the
    /// file is cleaned first and `.` never matches.
    fn matches_clean(file: &str, patterns: &[&str]) -> Result<bool, PatternError> {
        let m = Matcher::new(&strings(patterns))?;
        let file = clean(file);
        Ok(file != "." && m.matches(&file))
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Want {
        Fail,
        Exact,
        Inexact,
    }
    use Want::{Exact, Fail, Inexact};

    /// patternmatcher_test.go TestMatches (with its Unix rows).
    const MATCHES: &[(&str, &str, Want)] = &[
        ("**", "file", Exact),
        ("**", "file/", Exact),
        ("**/", "file", Exact),
        ("**/", "file/", Exact),
        ("**", "/", Exact),
        ("**/", "/", Exact),
        ("**", "dir/file", Exact),
        ("**/", "dir/file", Exact),
        ("**", "dir/file/", Exact),
        ("**/", "dir/file/", Exact),
        ("**/**", "dir/file", Exact),
        ("**/**", "dir/file/", Exact),
        ("dir/**", "dir/file", Exact),
        ("dir/**", "dir/file/", Exact),
        ("dir/**", "dir/dir2/file", Exact),
        ("dir/**", "dir/dir2/file/", Exact),
        ("**/dir", "dir", Exact),
        ("**/dir", "dir/file", Inexact),
        ("**/dir2/*", "dir/dir2/file", Exact),
        ("**/dir2/*", "dir/dir2/file/", Inexact),
        ("**/dir2/**", "dir/dir2/dir3/file", Exact),
        ("**/dir2/**", "dir/dir2/dir3/file/", Exact),
        ("**file", "file", Exact),
        ("**file", "dir/file", Exact),
        ("**/file", "dir/file", Exact),
        ("**file", "dir/dir/file", Exact),
        ("**/file", "dir/dir/file", Exact),
        ("**/file*", "dir/dir/file", Exact),
        ("**/file*", "dir/dir/file.txt", Exact),
        ("**/file*txt", "dir/dir/file.txt", Exact),
        ("**/file*.txt", "dir/dir/file.txt", Exact),
        ("**/file*.txt*", "dir/dir/file.txt", Exact),
        ("**/**/*.txt", "dir/dir/file.txt", Exact),
        ("**/**/*.txt2", "dir/dir/file.txt", Fail),
        ("**/*.txt", "file.txt", Exact),
        ("**/**/*.txt", "file.txt", Exact),
        ("a**/*.txt", "a/file.txt", Exact),
        ("a**/*.txt", "a/dir/file.txt", Exact),
        ("a**/*.txt", "a/dir/dir/file.txt", Exact),
        ("a/*.txt", "a/dir/file.txt", Fail),
        ("a/*.txt", "a/file.txt", Exact),
        ("a/*.txt**", "a/file.txt", Exact),
        ("a[b-d]e", "ae", Fail),
        ("a[b-d]e", "ace", Exact),
        ("a[b-d]e", "aae", Fail),
        ("a[^b-d]e", "aze", Exact),
        (".*", ".foo", Exact),
        (".*", "foo", Fail),
        ("abc.def", "abcdef", Fail),
        ("abc.def", "abc.def", Exact),
        ("abc.def", "abcZdef", Fail),
        ("abc?def", "abcZdef", Exact),
        ("abc?def", "abcdef", Fail),
        ("**/foo/bar", "foo/bar", Exact),
        ("**/foo/bar", "dir/foo/bar", Exact),
        ("**/foo/bar", "dir/dir2/foo/bar", Exact),
        ("abc/**", "abc", Fail),
        ("abc/**", "abc/def", Exact),
        ("abc/**", "abc/def/ghi", Exact),
        ("**/.foo", ".foo", Exact),
        ("**/.foo", "bar.foo", Fail),
        ("a(b)c/def", "a(b)c/def", Exact),
        ("a(b)c/def", "a(b)c/xyz", Fail),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", Exact),
        (
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            Exact,
        ),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            Exact,
        ),
        // Unix only.
        ("a\\\\", "a\\", Exact),
        ("a\\*b", "a*b", Exact),
    ];

    /// TestMatches' multiPatternTests.
    const MULTI: &[(&[&str], &str, Want)] = &[
        (&["**", "!util/docker/web"], "util/docker/web/foo", Fail),
        (
            &["**", "!util/docker/web", "util/docker/web/foo"],
            "util/docker/web/foo",
            Exact,
        ),
        (
            &[
                "**",
                "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            ],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            Fail,
        ),
        (
            &["**", "!dist/*.whl"],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            Fail,
        ),
    ];

    #[test]
    fn patternmatcher_matches_table() {
        let mut failures = Vec::new();
        for &(pattern, text, want) in MATCHES {
            let m = matcher(&[pattern]);
            if m.matches_exact(text) != (want == Exact) {
                failures.push(format!("exact: {pattern:?} {text:?}: want {want:?}"));
            }
            if m.matches(text) != (want != Fail) {
                failures.push(format!("or-parent: {pattern:?} {text:?}: want {want:?}"));
            }
        }
        for &(patterns, text, want) in MULTI {
            if matcher(patterns).matches(text) != (want != Fail) {
                failures.push(format!("{patterns:?} {text:?}: want {want:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(MATCHES.len(), 68);
        assert_eq!(MULTI.len(), 4);
    }

    /// patternmatcher_test.go matchTests (Go's filepath.Match tests),
    /// through the package-level matching: `Some(bool)` is the result,
    /// `None` a bad pattern.
    const MATCH_TESTS: &[(&str, &str, Option<bool>)] = &[
        ("abc", "abc", Some(true)),
        ("*", "abc", Some(true)),
        ("*c", "abc", Some(true)),
        ("a*", "a", Some(true)),
        ("a*", "abc", Some(true)),
        ("a*", "ab/c", Some(true)),
        ("a*/b", "abc/b", Some(true)),
        ("a*/b", "a/c/b", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
        ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
        ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
        ("ab[c]", "abc", Some(true)),
        ("ab[b-d]", "abc", Some(true)),
        ("ab[e-g]", "abc", Some(false)),
        ("ab[^c]", "abc", Some(false)),
        ("ab[^b-d]", "abc", Some(false)),
        ("ab[^e-g]", "abc", Some(true)),
        ("a\\*b", "a*b", Some(true)),
        ("a\\*b", "ab", Some(false)),
        ("a?b", "a☺b", Some(true)),
        ("a[^a]b", "a☺b", Some(true)),
        ("a???b", "a☺b", Some(false)),
        ("a[^a][^a][^a]b", "a☺b", Some(false)),
        ("[a-ζ]*", "α", Some(true)),
        ("*[a-ζ]", "A", Some(false)),
        ("a?b", "a/b", Some(false)),
        ("a*b", "a/b", Some(false)),
        ("[\\]a]", "]", Some(true)),
        ("[\\-]", "-", Some(true)),
        ("[x\\-]", "x", Some(true)),
        ("[x\\-]", "-", Some(true)),
        ("[x\\-]", "z", Some(false)),
        ("[\\-x]", "x", Some(true)),
        ("[\\-x]", "-", Some(true)),
        ("[\\-x]", "a", Some(false)),
        ("[]a]", "]", None),
        ("[-]", "-", None),
        ("[x-]", "x", None),
        ("[x-]", "-", None),
        ("[x-]", "z", None),
        ("[-x]", "x", None),
        ("[-x]", "-", None),
        ("[-x]", "a", None),
        ("\\", "a", None),
        ("[a-b-c]", "a", None),
        ("[", "a", None),
        ("[^", "a", None),
        ("[^bc", "a", None),
        ("a[", "a", None),
        ("a[", "ab", None),
        ("*x", "xxx", Some(true)),
    ];

    #[test]
    fn path_match_is_gos_path_match() {
        for (pattern, name, want) in [
            ("lib/*", "lib/busybox", true),
            ("*", "lib/busybox", false),
            ("**", "lib/busybox", false),
            ("busy?ox", "busybox", true),
            ("[a-c]usybox", "busybox", true),
            ("[^b]usybox", "busybox", false),
            ("\\*", "*", true),
            ("\\*", "x", false),
            ("*box", "busybox", true),
            ("*x:1.*", "busybox:1.36", true),
        ] {
            assert_eq!(path_match(pattern, name), Ok(want), "{pattern} {name}");
        }
        for bad in ["[", "a\\", "[z-", "[]"] {
            assert!(path_match(bad, "a").is_err(), "{bad}");
        }
        // No backtracking: a pattern that is exponential for a naive
        // matcher answers at once.
        let name = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(40));
        assert_eq!(path_match(&pattern, &name), Ok(false));
    }

    #[test]
    fn filepath_match_table() {
        let mut failures = Vec::new();
        for &(pattern, text, want) in MATCH_TESTS {
            let got = matches_clean(text, &[pattern]).ok();
            if got != want {
                failures.push(format!("{pattern:?} {text:?}: want {want:?}, got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(MATCH_TESTS.len(), 54);
    }

    /// patternmatcher_test.go compileTests: the kind moby picks.
    #[test]
    fn compile_kinds() {
        let cases = [
            ("*", "glob"),
            ("file*", "glob"),
            ("*file", "glob"),
            ("a*/b", "glob"),
            ("**", "suffix"),
            ("**/**", "glob"),
            ("dir/**", "prefix"),
            ("**/dir", "suffix"),
            ("**/dir2/*", "glob"),
            ("**/dir2/**", "glob"),
            ("**file", "suffix"),
            ("**/file*txt", "glob"),
            ("**/**/*.txt", "glob"),
            ("a[b-d]e", "glob"),
            (".*", "glob"),
            ("abc.def", "exact"),
            ("abc?def", "glob"),
            ("**/foo/bar", "suffix"),
            ("a(b)c/def", "exact"),
            ("a.|)$(}+{bc", "exact"),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "exact",
            ),
        ];
        for (pattern, want) in cases {
            let m = matcher(&[pattern]);
            let got = match &m.patterns[0].kind {
                Kind::Exact => "exact",
                Kind::Prefix(_) => "prefix",
                Kind::Suffix(_) => "suffix",
                Kind::Glob(_) => "glob",
            };
            assert_eq!(got, want, "{pattern:?}");
        }
        assert_eq!(
            matcher(&["dir/**"]).patterns[0].kind,
            Kind::Prefix("dir/".into())
        );
        assert_eq!(
            matcher(&["**/dir"]).patterns[0].kind,
            Kind::Suffix("/dir".into())
        );
    }

    #[test]
    fn single_patterns() {
        // TestWildcardMatches, TestPatternMatches.
        assert!(matches_clean("fileutils.go", &["*"]).unwrap());
        assert!(matches_clean("fileutils.go", &["*.go"]).unwrap());
        // An exclusion followed by an inclusion.
        assert!(matches_clean("fileutils.go", &["!fileutils.go", "*.go"]).unwrap());
        // A folder pattern followed by an exception.
        assert!(!matches_clean("docs/README.md", &["docs", "!docs/README.md"]).unwrap());
        assert!(!matches_clean("docs/README.md", &["docs/", "!docs/README.md"]).unwrap());
        assert!(!matches_clean("docs/README.md", &["docs/*", "!docs/README.md"]).unwrap());
        // A pattern followed by an exclusion.
        assert!(!matches_clean("fileutils.go", &["*.go", "!fileutils.go"]).unwrap());
        // The whole directory never matches.
        assert!(!matches_clean(".", &["*.go"]).unwrap());
        // No patterns, malformed patterns, a lone `!`.
        assert!(!matches_clean("/any/path/there", &[]).unwrap());
        assert!(matches_clean("/any/path/there", &["["]).is_err());
        assert_eq!(
            matches_clean("fileutils.go", &["!"]),
            Err(PatternError::LoneExclamation)
        );
    }

    #[test]
    fn clean_patterns() {
        assert_eq!(matcher(&["docs", "config"]).patterns().count(), 2);
        assert_eq!(matcher(&["docs", "config", ""]).patterns().count(), 2);
        assert!(matcher(&["docs", "!docs/README.md"]).has_exclusions());
        assert!(matcher(&["docs", "  !docs/README.md"]).has_exclusions());
        assert!(matcher(&["docs", "!docs/README.md  "]).has_exclusions());
        assert!(!matcher(&["docs", "config"]).has_exclusions());
        assert!(Matcher::new(&strings(&["!"])).is_err());
        // As in moby, patterns are cleaned before the `!` is looked at, so
        // `!c/..` cancels the `!` with the `c` (read_dockerignore cleans
        // after the `!`, which is what a .dockerignore gets).
        let m = matcher(&["a//b/", "!c/../d", "!e/../f/"]);
        let got: Vec<(&str, bool)> = m.patterns().collect();
        assert_eq!(got, [("a/b", false), ("d", false), ("f", false)]);
        let m = matcher(&["!./x"]);
        assert_eq!(m.patterns().collect::<Vec<_>>(), [("./x", true)]);
    }

    #[test]
    fn bad_patterns_name_themselves() {
        for p in ["[", "a[", "[^bc", "[]a]", "x\\", "[z-a]", "[Local-Only]/"] {
            let err = Matcher::new(&strings(&["ok", p])).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("{:?}", clean(p))), "{p:?}: {msg}");
        }
        let err = Matcher::new(&strings(&["!"])).unwrap_err();
        assert_eq!(err.to_string(), "illegal exclusion pattern: \"!\"");
    }

    #[test]
    fn read_all() {
        let content = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ";
        assert_eq!(
            read_dockerignore(content),
            [
                "test1",
                "test2",
                "a/file/here",
                "lastfile",
                "!inverted/abs/path",
                "!",
                "!",
            ]
        );
        assert!(read_dockerignore("").is_empty());
    }

    #[test]
    fn read_cleans_and_trims() {
        let text = "\u{feff}a/../b\r\n./c\n  d/  \n//e//f/\n#x\n  #y\n/\n!./g/..\n..\n../h\n/../i\n!\t/j\n\n";
        assert_eq!(
            read_dockerignore(text),
            ["b", "c", "d", "e/f", "#y", "/", "!.", "..", "../h", "i", "!j"]
        );
    }

    #[test]
    fn go_clean() {
        let cases = [
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("//", "/"),
            ("a/", "a"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("a/..", "."),
            ("../a", "../a"),
            ("../../a/..", "../.."),
            ("/../a", "/a"),
            ("a/b/../../..", ".."),
        ];
        for (path, want) in cases {
            assert_eq!(clean(path), want, "{path:?}");
        }
        assert_eq!(dir("a/b/c"), "a/b");
        assert_eq!(dir("a"), ".");
        assert_eq!(dir("a/"), "a");
        assert_eq!(dir("/"), "/");
    }

    #[test]
    fn parents_match() {
        let m = matcher(&["node_modules"]);
        assert!(m.matches("node_modules"));
        assert!(m.matches("node_modules/x/y.js"));
        assert!(!m.matches("src/node_modules"));
        let m = matcher(&["**/node_modules"]);
        assert!(m.matches("src/node_modules/x"));
        let m = matcher(&["*", "!keep"]);
        assert!(m.matches("a"));
        assert!(!m.matches("keep"));
        assert!(!m.matches("keep/x"));
    }

    #[test]
    fn skipping_directories() {
        let m = matcher(&["node_modules"]);
        assert!(m.can_skip_dir("node_modules"));
        assert!(!m.can_skip_dir("src"));
        let m = matcher(&["node_modules", "!node_modules/keep"]);
        assert!(!m.can_skip_dir("node_modules"));
        let m = matcher(&["a", "!b"]);
        assert!(m.can_skip_dir("a"));
        let m = matcher(&["a", "!**/keep"]);
        assert!(!m.can_skip_dir("a"));
        let m = matcher(&["a", "!a*/keep"]);
        assert!(!m.can_skip_dir("a"));
        let m = matcher(&["a", "!ab/**"]);
        assert!(m.can_skip_dir("a"));
        let m = matcher(&["a", "!a/**"]);
        assert!(!m.can_skip_dir("a"));
        let m = matcher(&["a", "!a"]);
        assert!(!m.can_skip_dir("a"));
        // An exception before the pattern that excludes the directory
        // cannot bring anything back.
        let m = matcher(&["!a/keep", "a"]);
        assert!(m.can_skip_dir("a"));
        assert!(m.matches("a/keep"));
        // `*` does not cross `/`: nothing under docs can be `*.md`.
        let m = matcher(&["*", "!*.md"]);
        assert!(m.can_skip_dir("docs"));
        assert!(m.matches("docs/README.md"));
        // Excluded through a parent.
        let m = matcher(&["a", "!a/b/c"]);
        assert!(!m.can_skip_dir("a/b"));
        assert!(matcher(&["a"]).can_skip_dir("a/b"));
    }

    /// Whenever `can_skip_dir` says yes, every path under the directory is
    /// excluded: checked by brute force over small trees.
    #[test]
    fn skipping_is_sound() {
        let pattern_sets: &[&[&str]] = &[
            &["a", "!a/b"],
            &["a", "!b"],
            &["*", "!*/c"],
            &["*", "!a?/c"],
            &["**/b", "!**/b/c"],
            &["a/**", "!a/b/**"],
            &["a*", "!a[a-z]/c"],
            &["a", "!a/b", "a/b/c"],
            &["**", "!a"],
            &["a", "!ab"],
        ];
        let names = ["a", "b", "c", "ab"];
        let mut paths = Vec::new();
        for x in names {
            paths.push(x.to_string());
            for y in names {
                paths.push(format!("{x}/{y}"));
                for z in names {
                    paths.push(format!("{x}/{y}/{z}"));
                }
            }
        }
        for patterns in pattern_sets {
            let m = matcher(patterns);
            for d in &paths {
                if !m.can_skip_dir(d) {
                    continue;
                }
                assert!(m.matches(d), "{patterns:?} {d}");
                let prefix = format!("{d}/");
                for p in paths.iter().filter(|p| p.starts_with(&prefix)) {
                    assert!(m.matches(p), "{patterns:?}: skipped {d} but {p} is kept");
                }
            }
        }
    }

    /// The one-pass parent check of globs agrees with trying each parent.
    #[test]
    fn parent_pass_agrees_with_each_parent() {
        let patterns = [
            "a", "a*", "*", "*/b", "a/*", "**/b", "a/**/c", "?", "[ab]", "a?/b*", "**/**", "a**",
            "*/", "/a", "a/b/c",
        ];
        let paths = [
            "", "/", "a", "a/b", "a/b/c", "a/b/c/d", "/a/b", "a//b/c", "./a/b", "a/./b/c", "a/b/",
            "ab/b/c", "x/a/b/c", "a/../b/c", "//a",
        ];
        for pattern in patterns {
            let m = matcher(&[pattern]);
            let p = &m.patterns[0];
            for path in paths {
                let parents = Parents::of(path);
                let each = parents.iter().any(|x| p.matches(x));
                assert_eq!(p.matches_a_parent(&parents), each, "{pattern:?} {path:?}");
            }
        }
    }

    #[test]
    fn adversarial_globs_finish() {
        let pattern = "a*".repeat(30) + "b";
        let m = matcher(&[&pattern]);
        let path = "a".repeat(5000);
        assert!(!m.matches(&path));
        assert!(m.matches(&(path.clone() + "b")));
        let deep = "**/a".repeat(30) + "/b";
        let m = matcher(&[&deep]);
        let path = "a/".repeat(2000) + "c";
        assert!(!m.matches(&path));
        let m = matcher(&[&"*".repeat(3000)]);
        assert!(m.matches("x"));
    }

    #[test]
    fn odd_patterns_do_not_panic() {
        for p in [
            "*",
            "**",
            "***",
            "**/",
            "/**",
            "!**",
            "\\*",
            "[",
            "[]",
            "[^]",
            "[\\",
            "[a-",
            "[a-\\",
            "a]",
            "]",
            "[!]",
            "[[]",
            "[*]",
            "[a*]",
            "**/**/**",
            "é*[é-ö]",
            "\\[*]",
            "a\\",
            "!",
            "!!",
            "! ",
            "[\u{10ffff}-\u{0}]",
            "./..",
            "../**",
        ] {
            if let Ok(m) = Matcher::new(&strings(&[p])) {
                for path in ["", "/", "a", "a/b", "é", "[", "]", "*", "a\nb"] {
                    let _ = m.matches(path);
                    let _ = m.matches_exact(path);
                    let _ = m.can_skip_dir(path);
                }
            }
        }
    }

    #[test]
    fn brackets_and_escapes() {
        let m = matcher(&["[*]"]);
        assert!(m.matches("*"));
        assert!(!m.matches("x"));
        let m = matcher(&["a[^/]b"]);
        assert!(m.matches("axb"));
        assert!(!m.matches("a/b"));
        let m = matcher(&["a[^x]b"]);
        assert!(m.matches("a/b"));
        let m = matcher(&["\\[x]"]);
        assert!(m.matches("[x]"));
        let m = matcher(&["f\\oo"]);
        assert!(m.matches("foo"));
        let m = matcher(&["**/*.log", "!important.log"]);
        assert!(m.matches("a/b/x.log"));
        assert!(!m.matches("important.log"));
        assert!(m.matches("a/important.log"));
    }
}
