//! The Dockerfile language as berth's builder reads it: the instructions
//! of a Dockerfile with their flags and line numbers (`parse`), the shell
//! word lexer that expands variables (`shell`), and `.dockerignore`
//! patterns (`ignore`). Everything here reads untrusted text and never
//! touches the file system.

pub mod ignore;
pub mod instructions;
pub mod parse;
pub mod shell;
