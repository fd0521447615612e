//! Typed instructions from the parsed nodes: flags checked against what
//! each instruction takes, arguments split, stages formed (global ARGs
//! before the first FROM). Variables are not expanded here: the builder
//! does that with the values in scope at each instruction.

use crate::parse::{Ast, Heredoc, Node, ParseError};

/// A command in exec form (`["a", "b"]`) or shell form (one string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub args: Vec<String>,
    pub shell_form: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub cmd: CommandLine,
    /// `--mount=...` values.
    pub mounts: Vec<String>,
    /// `--network=none|host|default`.
    pub network: Option<String>,
    /// `--security=insecure|sandbox`.
    pub security: Option<String>,
    pub heredocs: Vec<Heredoc>,
}

/// COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Copy {
    pub add: bool,
    pub sources: Vec<String>,
    /// Here-documents among the sources (by their position there).
    pub heredocs: Vec<Heredoc>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<String>,
    /// ADD `--checksum=sha256:...`.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// ADD `--unpack=false` keeps a local archive packed.
    pub unpack: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Health {
    /// Docker's form: `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub retries: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Shell(Vec<String>),
    /// Key/value pairs, unexpanded.
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    /// Names with optional defaults, unexpanded.
    Arg(Vec<(String, Option<String>)>),
    Copy(Copy),
    Workdir(String),
    User(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    StopSignal(String),
    Healthcheck(Health),
    /// The trigger's text, kept for the image config.
    Onbuild(String),
    Maintainer(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub line: usize,
    /// The instruction as written (continuations joined).
    pub original: String,
    pub kind: Kind,
}

/// `FROM [--platform=P] IMAGE [AS NAME]` and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub index: usize,
    /// The image reference, unexpanded (global ARGs apply), or a stage name.
    pub base: String,
    /// Lower case, as stage names are matched.
    pub name: Option<String>,
    pub platform: Option<String>,
    pub line: usize,
    pub instructions: Vec<Instruction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub escape: char,
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
    pub warnings: Vec<String>,
}

impl Dockerfile {
    /// The stage a `--target` or `--from` name means: its name (any case)
    /// or its index.
    pub fn stage_by_name(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                name.parse::<usize>()
                    .ok()
                    .filter(|i| *i < self.stages.len())
            })
    }
}

fn err(line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: message.into(),
    }
}

/// Parses text all the way to stages.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    from_ast(crate::parse::parse(text)?)
}

/// Stages from a parsed file.
pub fn from_ast(ast: Ast) -> Result<Dockerfile, ParseError> {
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &ast.nodes {
        if node.cmd == "from" {
            let stage = from_node(node, stages.len())?;
            if let Some(n) = &stage.name {
                if stages.iter().any(|s| s.name.as_ref() == Some(n)) {
                    return Err(err(
                        node.start_line,
                        format!(
                            "duplicate stage name {n:?}: each FROM ... AS NAME needs its own name"
                        ),
                    ));
                }
            }
            stages.push(stage);
            continue;
        }
        let instr = instruction(node)?;
        match stages.last_mut() {
            Some(s) => s.instructions.push(instr),
            None if matches!(instr.kind, Kind::Arg(_)) => global_args.push(instr),
            None => {
                return Err(err(
                    node.start_line,
                    format!(
                        "{} before the first FROM: only ARG may come before FROM",
                        node.cmd.to_uppercase()
                    ),
                ))
            }
        }
    }
    if stages.is_empty() {
        return Err(err(
            ast.nodes.last().map_or(1, |n| n.end_line),
            "no FROM instruction: a Dockerfile needs at least one stage",
        ));
    }
    Ok(Dockerfile {
        escape: ast.escape,
        global_args,
        stages,
        warnings: ast.warnings,
    })
}

fn from_node(node: &Node, index: usize) -> Result<Stage, ParseError> {
    let mut flags = Flags::new(node, &["platform"])?;
    let platform = flags.value("platform");
    let name =
        match node.args.as_slice() {
            [base] => (base, None),
            [base, as_, name] if as_.eq_ignore_ascii_case("as") => (base, Some(name)),
            _ => return Err(err(
                node.start_line,
                "FROM requires either one or three arguments: FROM [--platform=P] IMAGE [AS NAME]",
            )),
        };
    let (base, stage_name) = name;
    if let Some(n) = stage_name {
        let valid = n.starts_with(|c: char| c.is_ascii_alphabetic())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(err(
                node.start_line,
                format!("invalid name for build stage: {n:?}, name can't start with a number or contain symbols"),
            ));
        }
    }
    Ok(Stage {
        index,
        base: base.clone(),
        name: stage_name.map(|n| n.to_ascii_lowercase()),
        platform,
        line: node.start_line,
        instructions: Vec::new(),
    })
}

/// A node's flags, checked against the names its instruction takes.
struct Flags {
    values: Vec<(String, Option<String>)>,
}

impl Flags {
    fn new(node: &Node, allowed: &[&str]) -> Result<Flags, ParseError> {
        let mut values: Vec<(String, Option<String>)> = Vec::new();
        for f in &node.flags {
            let body = f.strip_prefix("--").unwrap_or(f);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            if !allowed.contains(&name) {
                return Err(err(
                    node.start_line,
                    format!(
                        "unknown flag: --{name} for {}{}",
                        node.cmd.to_uppercase(),
                        if allowed.is_empty() {
                            String::from(" (it takes no flags)")
                        } else {
                            format!(
                                " (it takes {})",
                                allowed
                                    .iter()
                                    .map(|a| format!("--{a}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        }
                    ),
                ));
            }
            values.push((name.to_string(), value));
        }
        Ok(Flags { values })
    }

    /// The last value of a flag that takes one.
    fn value(&mut self, name: &str) -> Option<String> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone().unwrap_or_default())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone().unwrap_or_default())
            .collect()
    }

    /// A boolean flag: `--link`, `--link=true`, `--link=false`.
    fn boolean(&self, node: &Node, name: &str) -> Result<Option<bool>, ParseError> {
        match self.values.iter().rev().find(|(n, _)| n == name) {
            None => Ok(None),
            Some((_, None)) => Ok(Some(true)),
            Some((_, Some(v))) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(err(
                    node.start_line,
                    format!("--{name}={v}: expected true or false"),
                )),
            },
        }
    }
}

fn command_line(node: &Node, what: &str) -> Result<CommandLine, ParseError> {
    if node.args.is_empty() && !node.json {
        return Err(err(
            node.start_line,
            format!("{what} requires at least one argument"),
        ));
    }
    Ok(CommandLine {
        args: node.args.clone(),
        shell_form: !node.json,
    })
}

fn one_arg(node: &Node, what: &str) -> Result<String, ParseError> {
    match node.args.as_slice() {
        [a] => Ok(a.clone()),
        [] => Err(err(
            node.start_line,
            format!("{what} requires exactly one argument"),
        )),
        _ => Err(err(
            node.start_line,
            format!("{what} requires exactly one argument"),
        )),
    }
}

fn pairs(node: &Node, what: &str) -> Result<Vec<(String, String)>, ParseError> {
    if node.args.is_empty() {
        return Err(err(
            node.start_line,
            format!("{what} requires at least one argument"),
        ));
    }
    let mut out = Vec::new();
    for kv in node.args.chunks(3) {
        let [k, v, _] = kv else {
            return Err(err(node.start_line, format!("{what}: bad key/value list")));
        };
        if k.is_empty() {
            return Err(err(
                node.start_line,
                format!("{what} names must not be empty"),
            ));
        }
        out.push((k.clone(), v.clone()));
    }
    Ok(out)
}

fn instruction(node: &Node) -> Result<Instruction, ParseError> {
    let line = node.start_line;
    let no_flags = |n: &Node| Flags::new(n, &[]).map(|_| ());
    let kind = match node.cmd.as_str() {
        "run" => {
            let mut f = Flags::new(node, &["mount", "network", "security"])?;
            let mut cmd = command_line(node, "RUN")?;
            if cmd.shell_form && cmd.args.is_empty() {
                cmd.args.push(String::new());
            }
            Kind::Run(Run {
                cmd,
                mounts: f.all("mount"),
                network: f.value("network"),
                security: f.value("security"),
                heredocs: node.heredocs.clone(),
            })
        }
        "cmd" => {
            no_flags(node)?;
            Kind::Cmd(command_line(node, "CMD")?)
        }
        "entrypoint" => {
            no_flags(node)?;
            Kind::Entrypoint(command_line(node, "ENTRYPOINT")?)
        }
        "shell" => {
            no_flags(node)?;
            if !node.json {
                return Err(err(
                    line,
                    "SHELL requires the arguments to be in JSON form: SHELL [\"executable\", \"parameters\"]",
                ));
            }
            if node.args.is_empty() {
                return Err(err(line, "SHELL requires at least one argument"));
            }
            Kind::Shell(node.args.clone())
        }
        "env" => {
            no_flags(node)?;
            Kind::Env(pairs(node, "ENV")?)
        }
        "label" => {
            no_flags(node)?;
            Kind::Label(pairs(node, "LABEL")?)
        }
        "arg" => {
            no_flags(node)?;
            if node.args.is_empty() {
                return Err(err(line, "ARG requires at least one argument"));
            }
            let mut out = Vec::new();
            for w in &node.args {
                let (name, default) = match w.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (w.clone(), None),
                };
                if name.is_empty() {
                    return Err(err(line, format!("ARG names can not be blank: {w:?}")));
                }
                out.push((name, default));
            }
            Kind::Arg(out)
        }
        "copy" | "add" => copy(node)?,
        "workdir" => {
            no_flags(node)?;
            Kind::Workdir(one_arg(node, "WORKDIR")?)
        }
        "user" => {
            no_flags(node)?;
            Kind::User(one_arg(node, "USER")?)
        }
        "expose" => {
            no_flags(node)?;
            if node.args.is_empty() {
                return Err(err(line, "EXPOSE requires at least one argument"));
            }
            Kind::Expose(node.args.clone())
        }
        "volume" => {
            no_flags(node)?;
            if node.args.is_empty() {
                return Err(err(line, "VOLUME requires at least one argument"));
            }
            if node.args.iter().any(|v| v.trim().is_empty()) {
                return Err(err(line, "VOLUME specified can not be an empty string"));
            }
            Kind::Volume(node.args.clone())
        }
        "stopsignal" => {
            no_flags(node)?;
            Kind::StopSignal(one_arg(node, "STOPSIGNAL")?)
        }
        "healthcheck" => healthcheck(node)?,
        "onbuild" => {
            no_flags(node)?;
            let Some(sub) = &node.sub else {
                return Err(err(line, "ONBUILD requires at least one argument"));
            };
            match sub.cmd.as_str() {
                "onbuild" => {
                    return Err(err(
                        line,
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    ))
                }
                "from" | "maintainer" => {
                    return Err(err(
                        line,
                        format!(
                            "{} isn't allowed as an ONBUILD trigger",
                            sub.cmd.to_uppercase()
                        ),
                    ))
                }
                _ => {}
            }
            // Checked now, so that a bad trigger fails this build.
            instruction(sub)?;
            let text = node.original.trim();
            let trigger = text
                .get(text.find(char::is_whitespace).unwrap_or(text.len())..)
                .unwrap_or("")
                .trim()
                .to_string();
            Kind::Onbuild(trigger)
        }
        "maintainer" => {
            no_flags(node)?;
            Kind::Maintainer(one_arg(node, "MAINTAINER")?)
        }
        other => {
            return Err(err(
                line,
                format!(
                    "unknown instruction: {}{}",
                    other.to_uppercase(),
                    suggestion(other)
                        .map(|s| format!(" (did you mean {}?)", s.to_uppercase()))
                        .unwrap_or_default()
                ),
            ))
        }
    };
    Ok(Instruction {
        line,
        original: node.original.trim().to_string(),
        kind,
    })
}

/// The known instruction closest to a misspelt one.
fn suggestion(word: &str) -> Option<&'static str> {
    crate::parse::INSTRUCTIONS
        .iter()
        .map(|k| (levenshtein(word, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().take(64).enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn copy(node: &Node) -> Result<Kind, ParseError> {
    let add = node.cmd == "add";
    let line = node.start_line;
    let allowed: &[&str] = if add {
        &[
            "chown",
            "chmod",
            "link",
            "parents",
            "exclude",
            "checksum",
            "keep-git-dir",
            "unpack",
        ]
    } else {
        &["from", "chown", "chmod", "link", "parents", "exclude"]
    };
    let mut f = Flags::new(node, allowed)?;
    let what = node.cmd.to_uppercase();
    if node.args.len() < 2 {
        return Err(err(
            line,
            format!("{what} requires at least two arguments, but only one was provided. Destination could not be determined"),
        ));
    }
    let (dest, sources) = node.args.split_last().expect("two or more");
    let from = f.value("from");
    if from.as_deref() == Some("") {
        return Err(err(line, "--from needs a stage name, index or image"));
    }
    // A heredoc source is the word `<<NAME` (or `<<-NAME`...) that opened it.
    let heredocs: Vec<Heredoc> = if node.json {
        Vec::new()
    } else {
        node.heredocs.clone()
    };
    Ok(Kind::Copy(Copy {
        add,
        sources: sources.to_vec(),
        heredocs,
        dest: dest.clone(),
        from,
        chown: f.value("chown"),
        chmod: f.value("chmod"),
        link: f.boolean(node, "link")?.unwrap_or(false),
        parents: f.boolean(node, "parents")?.unwrap_or(false),
        excludes: f.all("exclude"),
        checksum: f.value("checksum"),
        keep_git_dir: f.boolean(node, "keep-git-dir")?.unwrap_or(false),
        unpack: f.boolean(node, "unpack")?,
    }))
}

fn healthcheck(node: &Node) -> Result<Kind, ParseError> {
    let line = node.start_line;
    let mut f = Flags::new(
        node,
        &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
    )?;
    let Some(typ) = node.args.first() else {
        return Err(err(
            line,
            "HEALTHCHECK requires an argument: CMD command or NONE",
        ));
    };
    let test = match typ.to_ascii_uppercase().as_str() {
        "NONE" => {
            if node.args.len() > 1 {
                return Err(err(line, "HEALTHCHECK NONE takes no arguments"));
            }
            if !node.flags.is_empty() {
                return Err(err(line, "HEALTHCHECK NONE takes no options"));
            }
            vec!["NONE".to_string()]
        }
        "CMD" => {
            let rest = &node.args[1..];
            if rest.is_empty() {
                return Err(err(line, "Missing command after HEALTHCHECK CMD"));
            }
            if node.json {
                std::iter::once("CMD".to_string())
                    .chain(rest.iter().cloned())
                    .collect()
            } else {
                vec!["CMD-SHELL".to_string(), rest.join(" ")]
            }
        }
        other => {
            return Err(err(
                line,
                format!("Unknown type {other:?} in HEALTHCHECK (try CMD)"),
            ))
        }
    };
    Ok(Kind::Healthcheck(Health {
        test,
        interval: f.value("interval"),
        timeout: f.value("timeout"),
        start_period: f.value("start-period"),
        start_interval: f.value("start-interval"),
        retries: f.value("retries"),
    }))
}
