#![no_main]
//! What `berth build` reads from strangers: Dockerfiles (parsed to stages
//! with both escape characters), the words in them (expanded with a small
//! environment), and .dockerignore files. Any input parses or fails with
//! an error; nothing panics, hangs or grows without bound.

use berth_dockerfile::{ignore, instructions, parse, shell};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ast) = parse::parse(text) {
        let _ = ast.dump();
        let _ = instructions::from_ast(ast);
    }
    let env = |k: &str| match k {
        "A" => Some("a b".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    for escape in ['\\', '`'] {
        let mut lex = shell::Lexer::new(escape);
        let _ = lex.process(text, &env);
        lex.raw_quotes = true;
        lex.raw_escapes = true;
        lex.skip_unset_env = true;
        let _ = lex.process_words(text, &env);
    }
    let patterns = ignore::read_dockerignore(text);
    if let Ok(m) = ignore::Matcher::new(&patterns) {
        for p in ["a", "a/b/c", ".git/config", "Dockerfile", text] {
            let _ = m.matches(p);
            let _ = m.can_skip_dir(p);
        }
    }
});
