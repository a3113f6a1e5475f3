"""Writes harbour-walls.pdf (a one-page text PDF) so the demo corpus has a real PDF. Run once:
python examples/make_demo_pdf.py. Hand-rolled PDF objects: no PDF-writing dependency needed."""

from pathlib import Path

LINES = [
    "The Harbour Walls",
    "The harbour walls at Port Ellery were built in 1842 from granite brought by sea.",
    "Each block weighs as much as a small car and was set without mortar.",
    "In the great storm of 1953 the sea took the lighthouse cottage but not the walls.",
    "I walk the outer wall at dusk and count the iron rings where sailing ships once tied up.",
    "There are forty-one. There used to be forty-two. Nobody remembers the missing one.",
]


def build() -> bytes:
    text = "BT /F1 12 Tf 72 760 Td 16 TL " + " ".join(f"({line}) Tj T*" for line in LINES) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        " /Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(text)} >>\nstream\n{text}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


if __name__ == "__main__":
    (Path(__file__).parent / "corpus" / "harbour-walls.pdf").write_bytes(build())
