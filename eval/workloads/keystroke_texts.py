"""What the keystroke load benchmark (`eval/benches/keystrokes.py`) types: a ~1,000-token schema
description as every session's system prompt, padded to whole KV blocks, and one seeded
question per session."""

from __future__ import annotations

import random

from orchestrator.core.planning.prompt import PromptRenderer

WORDS_TEXT = (
    "which customers orders products invoices placed bought returned shipped more than three "
    "five ten the last quarter month year total value average price per customer region "
    "category sorted from highest lowest and with without any of in for by show list count "
    "sum all distinct where whose between before after during each every only"
)
WORDS = tuple(WORDS_TEXT.split())


# --- the texts -------------------------------------------------------------------------------


def system_prompt() -> str:
    """A deterministic schema description of about 1,000 tokens (SmolLM2's tokenizer)."""
    lines = [
        "You translate questions about a shop's database into one PostgreSQL query.",
        "Answer with the SQL only. The schema:",
    ]
    tables = {
        "customers": ["customer_id", "name", "email", "region", "signup_date", "segment"],
        "orders": ["order_id", "customer_id", "order_date", "status", "total", "currency"],
        "order_items": ["order_id", "product_id", "quantity", "unit_price", "discount"],
        "products": ["product_id", "name", "category", "price", "supplier_id", "stock"],
        "suppliers": ["supplier_id", "name", "country", "rating", "contact_email"],
        "invoices": ["invoice_id", "order_id", "issued_on", "due_on", "amount", "paid"],
        "payments": ["payment_id", "invoice_id", "paid_on", "amount", "method"],
        "returns": ["return_id", "order_id", "product_id", "returned_on", "reason"],
        "shipments": ["shipment_id", "order_id", "carrier", "shipped_on", "delivered_on"],
        "reviews": ["review_id", "product_id", "customer_id", "stars", "written_on", "body"],
        "categories": ["category", "parent_category", "description"],
        "regions": ["region", "country", "manager", "target"],
    }
    types = ("integer", "text", "date", "numeric(12,2)", "boolean", "varchar(64)")
    for index, (table, columns) in enumerate(tables.items()):
        lines.append(f"CREATE TABLE {table} (")
        for position, column in enumerate(columns):
            kind = "integer" if column.endswith("_id") else types[(index + position) % len(types)]
            key = " PRIMARY KEY" if position == 0 and column.endswith("_id") else ""
            lines.append(f"  {column} {kind}{key},  -- the {column.replace('_', ' ')} of {table}")
        lines.append(");")
    lines.append("Use only these tables and columns; join on the id columns.")
    return "\n".join(lines)


def aligned_system_prompt(tokenizer_path: str, block_size: int) -> tuple[str, int]:
    """`system_prompt()`, padded so the chat head (what the context warm-up sends) is a whole
    number of blocks: then the first stable word typed adds a usable block, and every
    `block_size` tokens after it, so each session makes keystroke warm-ups early on.
    Returns the prompt and the head's length in tokens."""
    renderer = PromptRenderer.load(tokenizer_path)
    base = system_prompt()
    for pad in range(4 * block_size):
        text = base + ("\nNotes:" + " ok" * pad if pad else "")
        head = len(renderer.session_prompt(text).head_tokens)
        if head % block_size == 0:
            return text, head
    return base, len(renderer.session_prompt(base).head_tokens)


def question(rng: random.Random, min_chars: int) -> str:
    words: list[str] = []
    while sum(len(word) + 1 for word in words) < min_chars:
        words.append(rng.choice(WORDS))
    return " ".join(words).capitalize() + "?"
