//! The one clap definition of berth's command line: help, completions and
//! man pages are all generated from it. Names and flags follow docker's.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "Build, ship and run containers: a daemonless, Docker-compatible engine",
    propagate_version = true
)]
pub struct Cli {
    /// Storage root for images and containers
    #[arg(
        long,
        global = true,
        env = "BERTH_ROOT",
        default_value = "/var/lib/berth"
    )]
    pub root: PathBuf,
    /// Runtime state directory
    #[arg(
        long,
        global = true,
        env = "BERTH_RUNROOT",
        default_value = "/run/berth"
    )]
    pub runroot: PathBuf,
    /// Log level
    #[arg(short = 'l', long, global = true, default_value = "warn",
          value_parser = ["trace", "debug", "info", "warn", "error", "fatal"])]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the berth version information
    Version(FormatArgs),
    /// Display system-wide information
    Info(FormatArgs),
    /// List images (alias of `image ls`)
    Images(ImagesArgs),
    /// Remove one or more images (alias of `image rm`)
    Rmi(RmiArgs),
    /// Load images from a tar archive or STDIN (alias of `image load`)
    Load(LoadArgs),
    /// Save one or more images to a tar archive (alias of `image save`)
    Save(SaveArgs),
    /// Import the contents from a tarball to create a filesystem image (alias of `image import`)
    Import(ImportArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE (alias of `image tag`)
    Tag(TagArgs),
    /// Show the history of an image (alias of `image history`)
    History(HistoryArgs),
    /// Return low-level information on images
    Inspect(InspectArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage berth
    #[command(subcommand)]
    System(SystemCommand),
    /// Generate the shell completion script
    Completion {
        /// Shell to generate for
        shell: clap_complete::Shell,
    },
    /// Write man pages for every command into a directory
    #[command(hide = true)]
    Man {
        /// Output directory
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List images
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    /// Load images from a tar archive or STDIN
    Load(LoadArgs),
    /// Save one or more images to a tar archive
    Save(SaveArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Remove unused images
    Prune(PruneArgs),
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show berth disk usage
    Df(FormatArgs),
    /// Display system-wide information
    Info(FormatArgs),
    /// Remove unused data
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct FormatArgs {
    /// Format output: "json" or a Go template such as '{{json .}}'
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    pub all: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Filter output based on conditions provided (dangling=, reference=, label=, before=, since=)
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output: "table", "json" or a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show images of this repository (and tag)
    pub repository: Option<String>,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
    /// Do not delete untagged parents (accepted for compatibility)
    #[arg(long)]
    pub no_prune: bool,
    /// Images to remove
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file (or OCI layout directory), instead of STDIN
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Archive format
    #[arg(long, default_value = "docker-archive",
          value_parser = ["docker-archive", "oci-archive", "oci-dir"])]
    pub format: String,
    /// Images to save
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL)
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    pub message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Tar file of a root filesystem (possibly compressed), or - for STDIN
    pub file: String,
    /// Name of the new image
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Format output: "table", "json" or a Go template
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a Go template, or "json"
    #[arg(short, long)]
    pub format: Option<String>,
    /// Only "image" objects exist for now
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (accepted: until=, label=)
    #[arg(long)]
    pub filter: Vec<String>,
}
