//! The parser against BuildKit's parser test files (their Dockerfile and
//! the AST dump BuildKit expects) and the heredoc, directive and error
//! cases of its parser tests.

use berth_dockerfile::instructions::{self, Kind};
use berth_dockerfile::parse::parse;

/// BuildKit's parser test files (frontend/dockerfile/parser/testfiles):
/// each Dockerfile's dump must be its `result`.
#[test]
fn buildkit_testfiles() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testfiles");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let case = e.unwrap().path();
        let df = std::fs::read_to_string(case.join("Dockerfile")).unwrap();
        let want = std::fs::read_to_string(case.join("result")).unwrap();
        let got = parse(&df)
            .unwrap_or_else(|e| panic!("{}: {e}", case.display()))
            .dump();
        for (g, w) in got.lines().zip(want.lines()) {
            assert_eq!(g, w, "{}", case.display());
        }
        assert_eq!(got, want, "{}", case.display());
        n += 1;
    }
    assert_eq!(n, 3);
}

#[test]
fn env_label_arg_onbuild_and_json_forms() {
    let df = "FROM x\nENV A B C\nENV a=1 b=\"two words\" c='x y'\nLABEL \"k k\"=v\nARG n1 n2= n3=\"\" n4=v\nONBUILD RUN echo hi\nCMD [\"a\", \"b\\u00e9\"]\nRUN [\"not\", 1]x\nENTRYPOINT [ ]\nVOLUME /a /b\n";
    let want = "(from \"x\")\n(env \"A\" \"B C\")\n(env \"a\" \"1\" \"b\" \"\\\"two words\\\"\" \"c\" \"'x y'\")\n(label \"\\\"k k\\\"\" \"v\")\n(arg \"n1\" \"n2=\" \"n3=\\\"\\\"\" \"n4=v\")\n(onbuild (run \"echo hi\"))\n(cmd \"a\" \"bé\")\n(run \"[\\\"not\\\", 1]x\")\n(entrypoint)\n(volume \"/a\" \"/b\")\n";
    assert_eq!(parse(df).unwrap().dump(), want);
    let err = parse("FROM x\nRUN [\"a\", 1]\n").unwrap_err();
    assert_eq!(err.line, 2);
    assert!(err.message.contains("strings only"), "{err}");
}

#[test]
fn continuations_comments_and_the_escape_directive() {
    let df = "# escape=`\n# syntax=docker/dockerfile:1\nFROM x\nRUN echo a `\n  # a comment inside\n\n  && echo b\nCOPY c:\\dir\\ /d/\n";
    let ast = parse(df).unwrap();
    assert_eq!(ast.escape, '`');
    assert_eq!(ast.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(ast.nodes[1].args, ["echo a   && echo b"]);
    assert_eq!(ast.nodes[1].start_line, 4);
    assert_eq!(ast.nodes[1].end_line, 7);
    assert_eq!(ast.nodes[2].args, ["c:\\dir\\", "/d/"]);
    assert_eq!(ast.warnings.len(), 1, "an empty continuation line warns");
    // A directive after a comment is only a comment.
    let ast = parse("# hello\n# escape=`\nFROM x\nRUN a \\\n b\n").unwrap();
    assert_eq!(ast.escape, '\\');
    assert_eq!(ast.nodes[1].args, ["a  b"]);
    assert!(parse("# escape=x\nFROM x\n").is_err());
    assert!(parse("# escape=`\n# escape=\\\nFROM x\n").is_err());
}

#[test]
fn heredocs() {
    let df = "FROM x\nRUN <<EOF\necho hello\necho world\nEOF\nRUN python3 <<'PY' && cat <<-END\nprint(1)\nPY\n\tindented\n\tEND\nCOPY <<a.txt <<b.txt /dest/\nfirst\na.txt\nsecond\nb.txt\nRUN [\"echo\", \"<<NOT\"]\n";
    let ast = parse(df).unwrap();
    let h = &ast.nodes[1].heredocs;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].name, "EOF");
    assert_eq!(h[0].content, "echo hello\necho world\n");
    assert!(h[0].expand);
    let h = &ast.nodes[2].heredocs;
    assert_eq!(h.len(), 2);
    assert_eq!((h[0].name.as_str(), h[0].expand), ("PY", false));
    assert_eq!(h[0].content, "print(1)\n");
    assert_eq!((h[1].name.as_str(), h[1].chomp), ("END", true));
    assert_eq!(h[1].content, "indented\n");
    let h = &ast.nodes[3].heredocs;
    assert_eq!(
        h.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["a.txt", "b.txt"]
    );
    assert_eq!(h[1].content, "second\n");
    assert!(ast.nodes[4].heredocs.is_empty(), "no heredocs in exec form");
    assert_eq!(ast.nodes.len(), 5);
    let err = parse("FROM x\nRUN <<EOF\nnever ends\n").unwrap_err();
    assert_eq!(err.line, 2);
    assert!(err.message.contains("unterminated heredoc"), "{err}");
}

#[test]
fn stages_args_and_errors_with_lines() {
    let df = instructions::parse("ARG V=1\nFROM a:$V AS Build\nRUN x\nFROM build\nCOPY --from=build --chown=1:2 --link /a /b\n").unwrap();
    assert_eq!(df.global_args.len(), 1);
    assert_eq!(df.stages.len(), 2);
    assert_eq!(df.stages[0].name.as_deref(), Some("build"));
    assert_eq!(df.stage_by_name("BUILD"), Some(0));
    let Kind::Copy(c) = &df.stages[1].instructions[0].kind else {
        panic!("not a copy")
    };
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.chown.as_deref(), Some("1:2"));
    assert!(c.link);
    for (text, line, needle) in [
        (
            "FROM a\nFROOM b\n",
            2,
            "unknown instruction: FROOM (did you mean FROM?)",
        ),
        ("RUN x\nFROM a\n", 1, "before the first FROM"),
        ("FROM a AS x\nFROM b AS X\n", 2, "duplicate stage name"),
        (
            "FROM a b\n",
            1,
            "FROM requires either one or three arguments",
        ),
        (
            "FROM a\nCOPY onlyone\n",
            2,
            "COPY requires at least two arguments",
        ),
        (
            "FROM a\nRUN --mount\n",
            2,
            "RUN requires at least one argument",
        ),
        (
            "FROM a\nWORKDIR\n",
            2,
            "WORKDIR requires exactly one argument",
        ),
        (
            "FROM a\nSHELL sh -c\n",
            2,
            "SHELL requires the arguments to be in JSON form",
        ),
        ("FROM a\nHEALTHCHECK FOO x\n", 2, "Unknown type"),
        ("FROM a\nONBUILD ONBUILD RUN x\n", 2, "Chaining ONBUILD"),
        ("FROM a\nENV =x\n", 2, "names must not be empty"),
        (
            "FROM a\nEXPOSE\n",
            2,
            "EXPOSE requires at least one argument",
        ),
        ("FROM a\nADD --from=x a b\n", 2, "unknown flag: --from"),
        ("\n\n", 2, "file with no instructions"),
        // BuildKit's testfiles-negative: env_no_value, shykes-nested-json.
        ("FROM busybox\nENV PATH\n", 2, "ENV must have two arguments"),
        (
            "FROM busybox\nCMD [ \"echo\", [ \"nested json\" ] ]\n",
            2,
            "strings only",
        ),
    ] {
        let e = instructions::parse(text).unwrap_err();
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert!(e.message.contains(needle), "{text:?}: {e}");
    }
}
