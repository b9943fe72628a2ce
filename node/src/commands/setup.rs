//! `forge-node setup`: a fresh Groth16 key pair for the CU circuit.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

/// Arguments of `setup`.
#[derive(Debug, Args)]
pub(crate) struct SetupArgs {
    /// Directory to write `cu.pk`, `cu.vk` and `cu.pvk` (the verifying key
    /// with its pairing precomputation) into.
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

/// Run a one-party Groth16 setup: draw a seed from the OS CSPRNG, derive the
/// keys, write them, forget the seed. Whoever learns the seed can forge CU
/// proofs for this key, so the seed is never written anywhere; trusting these
/// keys means trusting that the party who ran this command did not keep it.
pub(crate) fn setup(args: SetupArgs) -> Result<()> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    let (pk, vk) = forge_circuits::setup(seed);
    seed.fill(0);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let (pk_path, vk_path) = (args.out.join("cu.pk"), args.out.join("cu.vk"));
    let pvk_path = args.out.join("cu.pvk");
    for (path, bytes) in [
        (&pk_path, forge_circuits::pk_to_bytes(&pk)),
        (&vk_path, forge_circuits::vk_to_bytes(&vk)),
        (&pvk_path, forge_circuits::vk_to_prepared_bytes(&vk)),
    ] {
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let hash: String = forge_circuits::vk_hash(&vk)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    tracing::info!(pk = %pk_path.display(), vk = %vk_path.display(), "wrote a new CU key pair (one-party setup; the seed was discarded)");
    println!("{hash}");
    Ok(())
}
