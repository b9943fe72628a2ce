//! The fixed prompt set of `forge-bench decode`: chat prompts of different
//! lengths and a long (~500-token) prompt for prefill.

use anyhow::{Context, Result};
use forge_engine::{ChatMessage, GenerateRequest, Model, SamplingParams};

/// The system message used for every prompt (the one DESIGN.md section 2
/// validates the model with).
pub const SYSTEM: &str = "You are a helpful assistant.";

/// One benchmark prompt.
#[derive(Clone, Debug)]
pub struct BenchPrompt {
    /// Short name, used in tables.
    pub name: &'static str,
    /// The user message.
    pub user: String,
}

impl BenchPrompt {
    /// The prompt rendered with the model's ChatML template (system message,
    /// user turn, assistant opener).
    pub fn render(&self, model: &Model) -> Result<String> {
        let template = model
            .chat_template()
            .context("the model has no ChatML chat template")?;
        Ok(template.render(
            &[
                ChatMessage::new("system", SYSTEM),
                ChatMessage::new("user", &self.user),
            ],
            true,
        )?)
    }

    /// A greedy request for exactly `max_tokens` tokens: the stop tokens
    /// get a logit bias of -100, so every prompt decodes the full length.
    pub fn full_length_request(&self, model: &Model, max_tokens: usize) -> Result<GenerateRequest> {
        Ok(GenerateRequest {
            prompt: model.tokenizer().encode(&self.render(model)?)?,
            max_tokens,
            sampling: SamplingParams {
                logit_bias: model
                    .tokenizer()
                    .stop_ids()
                    .iter()
                    .map(|&t| (t, -100.0))
                    .collect(),
                ..SamplingParams::greedy()
            },
            stop: vec![],
        })
    }
}

/// A passage of plain prose; with the instruction and chat template around
/// it the prompt is about 500 SmolLM2 tokens.
pub const LONG_PASSAGE: &str = "\
The history of the lighthouse is a history of coastlines, trade and the slow \
accumulation of engineering knowledge. The earliest lights were simple fires \
kept burning on hilltops near harbours, tended by watchmen who were paid by \
merchants anxious to see their cargo arrive safely. The most famous of the \
ancient lights stood on the island of Pharos at Alexandria; contemporary \
writers claimed that its fire could be seen from many miles out at sea, and \
its name became the word for lighthouse in several languages. For more than \
a thousand years afterwards, most lights remained open fires of wood or coal, \
which burned unevenly, consumed enormous quantities of fuel and were often \
hidden by their own smoke.

The eighteenth century brought a series of improvements. Oil lamps with \
hollow wicks produced a steadier, brighter flame, and polished metal \
reflectors shaped like shallow bowls gathered light that would otherwise \
have been wasted and sent it toward the horizon. Towers themselves became \
more ambitious. Building on exposed rocks, where waves could strike with \
tremendous force, required new techniques: engineers cut granite blocks that \
interlocked like the pieces of a puzzle, so that the whole tower behaved as \
a single mass, and they used mortars that would set under water.

The decisive advance came in the nineteenth century with the Fresnel lens. \
Instead of a single heavy piece of glass, the lens was assembled from \
concentric rings of prisms, each bending light by exactly the right amount. \
The result was far lighter than a solid lens of the same power and captured \
most of the light emitted by the lamp. Rotating assemblies gave each \
lighthouse a characteristic pattern of flashes, so that a navigator who \
counted the intervals could tell one light from another and fix the ship's \
position on the chart. Fuel changed again, from vegetable oils to kerosene, \
and finally to electricity.

In the twentieth century automation removed the keepers. Sensors switched \
the lights on at dusk, backup lamps rotated into place when a bulb failed, \
and radio beacons and later satellite navigation reduced the importance of \
the light itself. Many towers survive today as museums or landmarks, while \
others still guide small boats whose crews prefer a light they can see with \
their own eyes. Visitors who climb the narrow spiral stairs are usually \
surprised by how small the lamp room is, and by how much of the work of \
keeping ships safe was once done by a single family living at the top of a \
rock in the sea.";

/// The prompt set, shortest first; the last one is the prefill prompt.
pub fn prompt_set() -> Vec<BenchPrompt> {
    vec![
        BenchPrompt { name: "short", user: "What is the capital of France?".into() },
        BenchPrompt {
            name: "story",
            user: "Write a short story about a robot who learns to paint. Give the robot a name and describe its first painting."
                .into(),
        },
        BenchPrompt {
            name: "explain",
            user: "Explain, step by step and in detail, how a bicycle works: the frame, the wheels, the chain and gears, \
                   the brakes, and why the rider stays balanced when the bicycle is moving. Use simple words, give an \
                   example for each part, and finish with three tips for keeping a bicycle in good condition."
                .into(),
        },
        BenchPrompt {
            name: "prefill-500",
            user: format!("Read the following text and summarize it in a few sentences.\n\n{LONG_PASSAGE}"),
        },
    ]
}
