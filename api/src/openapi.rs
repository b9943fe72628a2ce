//! The OpenAPI 3.0 document of this node's surface (hand-written, served at
//! `GET /openapi.json`). It describes what the node accepts, which is a
//! subset of the OpenAI API plus Forge's receipts and balances.

use serde_json::{Value, json};

use crate::openai::MAX_CHOICES;

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn sampling_properties(model: Option<&str>) -> Value {
    let model = match model {
        Some(m) => {
            json!({"type": "string", "enum": [m], "description": "The model id from GET /v1/models."})
        }
        None => json!({"type": "string", "description": "The model id from GET /v1/models."}),
    };
    json!({
        "model": model,
        "max_tokens": {"type": "integer", "minimum": 1, "nullable": true},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "nullable": true, "default": 1},
        "top_p": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "maximum": 1, "nullable": true, "default": 1},
        "top_k": {"type": "integer", "minimum": 0, "nullable": true, "description": "Forge extension: keep the k most likely tokens (0 = all)."},
        "seed": {"type": "integer", "nullable": true, "description": "Seed of the counter-based sampler; random when absent. Recorded in the receipt."},
        "stop": {"nullable": true, "oneOf": [{"type": "string", "maxLength": 256}, {"type": "array", "items": {"type": "string", "maxLength": 256}, "maxItems": 4}]},
        "stream": {"type": "boolean", "nullable": true, "default": false},
        "stream_options": {"type": "object", "nullable": true, "additionalProperties": false,
            "properties": {"include_usage": {"type": "boolean", "nullable": true}},
            "description": "Only with stream: true."},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2, "nullable": true},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2, "nullable": true},
        "logit_bias": {"type": "object", "nullable": true, "maxProperties": 300,
            "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
            "description": "Token id (as a string) to a bias added to its logit."},
        "n": {"type": "integer", "minimum": 1, "maximum": MAX_CHOICES, "nullable": true, "default": 1,
            "description": "Choices to generate, each a sequence of the continuous batch with its own receipt; at most 8 and at most the node's max_concurrent. Choice 0 uses `seed`, choice i > 0 a seed derived from it (docs/DESIGN.md, section 10)."},
        "user": {"type": "string", "nullable": true},
    })
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

/// The document; with the served model's id, `model` is pinned to it.
pub fn document(model: Option<&str>) -> Value {
    let chat_props = with(
        sampling_properties(model),
        json!({
            "messages": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/ChatMessage"}},
            "max_completion_tokens": {"type": "integer", "minimum": 1, "nullable": true},
            "logprobs": {"type": "boolean", "nullable": true, "default": false,
                "description": "Return each generated token's log-probability: log-softmax of the logits after penalties and logit_bias, before temperature, top_k and top_p."},
            "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20, "nullable": true,
                "description": "With logprobs: true, also the most likely alternatives at each position."},
            "response_format": {"type": "object", "nullable": true, "properties": {"type": {"type": "string", "enum": ["text"]}}, "required": ["type"], "additionalProperties": false},
        }),
    );
    let completion_props = with(
        sampling_properties(model),
        json!({
            "prompt": {"oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1},
                {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
                {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}, "minItems": 1, "maxItems": 1}
            ]},
            "echo": {"type": "boolean", "nullable": true, "description": "Only false is supported."},
            "suffix": {"type": "string", "nullable": true, "description": "Only empty is supported."},
            "best_of": {"type": "integer", "nullable": true, "minimum": 1, "maximum": 1},
            "logprobs": {"type": "integer", "minimum": 0, "maximum": 5, "nullable": true,
                "description": "Return each generated token's log-probability and the top `logprobs` alternatives (the sampled token is always included)."},
        }),
    );
    let generation_responses = |schema: &str| {
        json!({
            "200": {
                "description": "The answer (JSON), or with stream: true server-sent events of chunks ending with `data: [DONE]`.",
                "headers": {"x-forge-receipt": {"description": "The receipt id of every choice, comma-separated, in choice order (streams included: ids are assigned before generation).", "schema": {"type": "string"}}},
                "content": {
                    "application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}},
                    "text/event-stream": {"schema": {"type": "string"}}
                }
            },
            "400": error_response("Invalid or unsupported parameter (param names it), or context length exceeded."),
            "401": error_response("Missing or unknown API key (once the node has accounts)."),
            "404": error_response("Unknown model."),
            "408": error_response("The request ran past the node's time limit (code request_timeout), or its receipts were not recorded within it (code receipt_timeout; the message names where they will appear)."),
            "413": error_response("Body over the node's limit."),
            "415": error_response("Body declared as something other than JSON."),
            "429": error_response("Queue full (Retry-After) or insufficient_quota."),
            "503": error_response("The model is still loading.")
        })
    };
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Forge node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "An OpenAI-compatible inference API. Every answer is metered in exact FLOPs (1 CU = 10^9 FLOPs) and carries a signed, proof-carrying receipt."
        },
        "paths": {
            "/v1/chat/completions": {"post": {
                "operationId": "createChatCompletion",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}}},
                "responses": generation_responses("ChatCompletion")
            }},
            "/v1/completions": {"post": {
                "operationId": "createCompletion",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CompletionRequest"}}}},
                "responses": generation_responses("Completion")
            }},
            "/v1/models": {"get": {"operationId": "listModels", "responses": {
                "200": {"description": "The served model.", "content": {"application/json": {"schema": {"type": "object"}}}},
                "503": error_response("The model is still loading.")
            }}},
            "/v1/models/{id}": {"get": {"operationId": "retrieveModel",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "The model.", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "404": error_response("Unknown model.")
                }}},
            "/v1/receipts/{id}": {"get": {"operationId": "getReceipt",
                "parameters": [{"name": "id", "in": "path", "required": true, "description": "A receipt id from an answer (32 hex digits) or a receipt hash (64 hex digits).",
                    "schema": {"type": "string", "pattern": "^([0-9a-f]{32}|[0-9a-f]{64})$"}}],
                "responses": {
                    "200": {"description": "The receipt: JSON, or the canonical binary (FRGR v1) with Accept: application/octet-stream.",
                        "content": {"application/json": {"schema": {"type": "object"}}, "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                    "404": error_response("No such receipt (or not yet recorded).")
                }}},
            "/v1/receipts/{id}/openings": {"post": {"operationId": "openReceiptCells",
                "description": "An auditor's challenge: opens the cells (layer, position) that `seed` selects for the receipt, from the commitment the node kept (the most recent ones, up to --audit-retain-mib). The openings hold the request's tokens, so only the receipt id (not the hash) names them.",
                "parameters": [{"name": "id", "in": "path", "required": true, "description": "A receipt id from an answer (32 hex digits).",
                    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["seed"], "additionalProperties": false, "properties": {
                    "seed": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$", "description": "The auditor's fresh 32-byte challenge seed, hex."},
                    "cells": {"type": "integer", "minimum": 1, "maximum": 64, "default": 8, "description": "Cells to open."}
                }}}}},
                "responses": {
                    "200": {"description": "The openings, canonical binary (FRGO v6): check them with forge_proofs::SpotChecker or `forge-node audit`.",
                        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                    "400": error_response("Bad seed or cell count."),
                    "404": error_response("No such receipt (or not yet recorded)."),
                    "410": error_response("The node no longer keeps this receipt's commitment (code commitment_expired).")
                }}},
            "/v1/receipts/verifying-key": {"get": {"operationId": "getVerifyingKey", "responses": {
                "200": {"description": "The CU verifying key (for forge-verify --vk).", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
            }}},
            "/v1/balance": {"get": {"operationId": "getBalance", "responses": {
                "200": {"description": "The caller's balance in milli-CU (metered: false on an open node).", "content": {"application/json": {"schema": {"type": "object"}}}},
                "401": error_response("Missing or unknown API key.")
            }}},
            "/health": {"get": {"operationId": "health", "responses": {
                "200": {"description": "Ready.", "content": {"application/json": {"schema": {"type": "object"}}}},
                "503": error_response("The model is still loading.")
            }}},
            "/metrics": {"get": {"operationId": "metrics", "responses": {
                "200": {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}}
            }}}
        },
        "components": {
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["message", "type", "param", "code"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": {"type": "string", "nullable": true},
                        "code": {"type": "string", "nullable": true}
                    }}}},
                "ChatMessage": {"type": "object", "required": ["role", "content"], "additionalProperties": false, "properties": {
                    "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
                    "content": {"oneOf": [
                        {"type": "string"},
                        {"type": "array", "items": {"type": "object", "required": ["type", "text"], "additionalProperties": false,
                            "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}}}}
                    ]}
                }},
                "ChatCompletionRequest": {"type": "object", "required": ["model", "messages"], "additionalProperties": false, "properties": chat_props},
                "CompletionRequest": {"type": "object", "required": ["model", "prompt"], "additionalProperties": false, "properties": completion_props},
                "Receipt": {"type": "object", "description": "One choice's receipt.", "properties": {
                    "index": {"type": "integer"},
                    "receipt_id": {"type": "string", "description": "32 hex digits: the receipt's request id."},
                    "receipt_hash": {"type": "string", "description": "64 hex digits."},
                    "flops": {"type": "integer"},
                    "cu": {"type": "number"},
                    "milli_cu": {"type": "integer"},
                    "activation_root": {"type": "string"},
                    "charged_milli_cu": {"type": "integer"}
                }},
                "Forge": {"type": "object", "description": "The receipts of this answer: totals over every choice, and each receipt. receipt_id, receipt_hash and activation_root are choice 0's.", "properties": {
                    "receipt_id": {"type": "string"},
                    "receipt_hash": {"type": "string"},
                    "receipt_ids": {"type": "array", "items": {"type": "string"}},
                    "flops": {"type": "integer"},
                    "cu": {"type": "number"},
                    "milli_cu": {"type": "integer"},
                    "activation_root": {"type": "string"},
                    "price": {"type": "object", "properties": {"milli_cu_per_cu": {"type": "integer"}, "charged_milli_cu": {"type": "integer"}}},
                    "receipts": {"type": "array", "items": {"$ref": "#/components/schemas/Receipt"}}
                }},
                "TokenLogprob": {"type": "object", "required": ["token", "logprob", "bytes"], "properties": {
                    "token": {"type": "string"}, "logprob": {"type": "number"},
                    "bytes": {"type": "array", "items": {"type": "integer"}}
                }},
                "ChatLogprobs": {"type": "object", "nullable": true, "properties": {
                    "content": {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/TokenLogprob"}, {"type": "object", "properties": {
                        "top_logprobs": {"type": "array", "items": {"$ref": "#/components/schemas/TokenLogprob"}}}}]}},
                    "refusal": {"nullable": true}
                }},
                "CompletionLogprobs": {"type": "object", "nullable": true, "properties": {
                    "tokens": {"type": "array", "items": {"type": "string"}},
                    "token_logprobs": {"type": "array", "items": {"type": "number"}},
                    "top_logprobs": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "number"}}},
                    "text_offset": {"type": "array", "items": {"type": "integer"}}
                }},
                "Usage": {"type": "object", "properties": {
                    "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}
                }},
                "ChatCompletion": {"type": "object", "required": ["id", "object", "created", "model", "choices", "usage", "forge"], "properties": {
                    "id": {"type": "string"}, "object": {"type": "string", "enum": ["chat.completion"]},
                    "created": {"type": "integer"}, "model": {"type": "string"}, "system_fingerprint": {"type": "string"},
                    "choices": {"type": "array", "items": {"type": "object", "properties": {
                        "index": {"type": "integer"},
                        "message": {"type": "object", "properties": {"role": {"type": "string"}, "content": {"type": "string"}}},
                        "logprobs": {"$ref": "#/components/schemas/ChatLogprobs"},
                        "finish_reason": {"type": "string", "enum": ["stop", "length"]}
                    }}},
                    "usage": {"$ref": "#/components/schemas/Usage"},
                    "forge": {"$ref": "#/components/schemas/Forge"}
                }},
                "Completion": {"type": "object", "required": ["id", "object", "created", "model", "choices", "usage", "forge"], "properties": {
                    "id": {"type": "string"}, "object": {"type": "string", "enum": ["text_completion"]},
                    "created": {"type": "integer"}, "model": {"type": "string"}, "system_fingerprint": {"type": "string"},
                    "choices": {"type": "array", "items": {"type": "object", "properties": {
                        "index": {"type": "integer"}, "text": {"type": "string"},
                        "logprobs": {"$ref": "#/components/schemas/CompletionLogprobs"},
                        "finish_reason": {"type": "string", "enum": ["stop", "length"]}
                    }}},
                    "usage": {"$ref": "#/components/schemas/Usage"},
                    "forge": {"$ref": "#/components/schemas/Forge"}
                }}
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "Required once the node has accounts."}}
        },
        "security": [{}, {"bearer": []}]
    })
}
