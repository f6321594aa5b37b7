//! `tss-gate keys generate`: offline RSA key pair generation.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Exit;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate an RSA key pair: private PKCS#8 PEM (0600) and public SPKI PEM.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Modulus size, 2048 to 16384; Cobo's docs use 4096.
    #[arg(long, default_value_t = 4096)]
    pub bits: usize,
    /// Directory for the two files (created 0700 if missing).
    #[arg(long, default_value = "keys")]
    pub out: PathBuf,
    /// Files are NAME.pem and NAME.pub.pem.
    #[arg(long, default_value = "callback-server")]
    pub name: String,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

pub fn run(cmd: KeysCommand) -> Exit {
    match cmd {
        KeysCommand::Generate(a) => generate(a),
    }
}

fn generate(a: GenerateArgs) -> Exit {
    if a.name.is_empty() || a.name.contains('/') || a.name.starts_with('.') {
        eprintln!("error: `--name` must be a plain file name");
        return Exit::Error;
    }
    if let Err(e) = crate::keys::check_generate_bits(a.bits) {
        eprintln!("error: {e}");
        return Exit::Error;
    }
    let paths = crate::keys::pair_paths(&a.out, &a.name);
    if !a.force {
        for p in [&paths.private, &paths.public] {
            if p.exists() {
                eprintln!(
                    "error: key file `{}` already exists; pass --force to overwrite it",
                    p.display()
                );
                return Exit::Error;
            }
        }
    }
    eprintln!("generating a {}-bit RSA key pair...", a.bits);
    let result = crate::keys::generate(a.bits)
        .and_then(|k| crate::keys::write_pair(&k, &a.out, &a.name, a.force));
    match result {
        Ok(p) => {
            println!("private key: {} (mode 0600)", p.private.display());
            println!("public key:  {}", p.public.display());
            Exit::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Error
        }
    }
}
