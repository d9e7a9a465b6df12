"""Minimal but valid documents, written by hand so they are deterministic and tiny.

* PDF 1.4: one page per entry of ``pages``, Helvetica text, a correct cross-reference table
  (byte offsets computed as the file is built), so strict readers (pdf.js, Preview) open it.
* Office Open XML: the fewest parts Word and Excel accept (content types, package
  relationships, the main part; the workbook also has its relationships). Zip entries carry a
  fixed timestamp so the bytes are the same on every run.
* PNG (solid colour, with a simple stripe) and a 1x1 transparent GIF (a tracking pixel).
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Sequence
from io import BytesIO
from xml.sax.saxutils import escape

_ZIP_DATE = (2026, 1, 1, 0, 0, 0)


# --------------------------------------------------------------------------------------- PDF

def _pdf_text(s: str) -> str:
    """A PDF literal string body in WinAnsiEncoding (cp1252): delimiters escaped, bytes above
    0x7F as octal escapes, so the content stream stays ASCII ("Caf\\351")."""
    out = []
    for b in s.encode("cp1252", "replace"):
        ch = chr(b)
        if ch in "\\()":
            out.append("\\" + ch)
        elif 0x20 <= b < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\{b:03o}")
    return "".join(out)


def make_pdf(title: str, pages: Sequence[Sequence[str]] | None = None) -> bytes:
    """A valid PDF whose first page starts with ``title`` in large type, then the lines of
    ``pages[0]``; each further entry of ``pages`` is another page."""
    if not pages:
        pages = [[]]
    objects: list[bytes] = []  # object n is objects[n - 1]
    n_pages = len(pages)
    # 1: catalog, 2: pages, 3: font, then (page, contents) pairs, then info.
    page_ids = [4 + 2 * i for i in range(n_pages)]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{p} 0 R" for p in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
                   b"/Encoding /WinAnsiEncoding >>")
    for i, lines in enumerate(pages):
        ops = ["BT"]
        y = 780
        if i == 0:
            ops += ["/F1 18 Tf", f"1 0 0 1 56 {y} Tm", f"({_pdf_text(title)}) Tj"]
            y -= 36
        ops.append("/F1 11 Tf")
        for line in lines:
            ops += [f"1 0 0 1 56 {y} Tm", f"({_pdf_text(line)}) Tj"]
            y -= 16
            if y < 56:
                break
        ops.append("ET")
        stream = "\n".join(ops).encode("ascii")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
                       f"/Resources << /Font << /F1 3 0 R >> >> "
                       f"/Contents {page_ids[i] + 1} 0 R >>".encode())
        objects.append(b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n"
                       + stream + b"\nendstream")
    info_id = len(objects) + 1
    objects.append(f"<< /Title ({_pdf_text(title)}) /Producer (gateway dev stack) "
                   f"/CreationDate (D:20260101000000Z) >>".encode())

    out = BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n".encode())
    out.write(b"0000000000 65535 f \n")
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {info_id} 0 R >>\n"
              f"startxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


# ----------------------------------------------------------------------------- Office (OOXML)

def _zip(parts: dict[str, str]) -> bytes:
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in parts.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, text.encode("utf-8"))
    return buf.getvalue()


_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_PKG_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_DOC_REL = ("http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
            "officeDocument")


def make_docx(title: str, paragraphs: Sequence[str] = ()) -> bytes:
    """A minimal valid Word document: a bold title and plain paragraphs."""
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    body = [f'<w:p><w:r><w:rPr><w:b/><w:sz w:val="32"/></w:rPr>'
            f'<w:t xml:space="preserve">{escape(title)}</w:t></w:r></w:p>']
    body += [f'<w:p><w:r><w:t xml:space="preserve">{escape(p)}</w:t></w:r></w:p>'
             for p in paragraphs]
    return _zip({
        "[Content_Types].xml": _XML + (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/word/document.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
            "</Types>"),
        "_rels/.rels": _XML + (
            f'<Relationships xmlns="{_PKG_RELS}">'
            f'<Relationship Id="rId1" Type="{_DOC_REL}" Target="word/document.xml"/>'
            "</Relationships>"),
        "word/document.xml": _XML + (
            f'<w:document xmlns:w="{w}"><w:body>{"".join(body)}'
            '<w:sectPr><w:pgSz w:w="11906" w:h="16838"/></w:sectPr></w:body></w:document>'),
    })


def _col(i: int) -> str:
    name = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        name = chr(65 + r) + name
    return name


def make_xlsx(sheet: str, rows: Sequence[Sequence[str | int | float]]) -> bytes:
    """A minimal valid Excel workbook with one sheet of ``rows`` (strings inline, numbers
    as numbers)."""
    x = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    r_ns = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    xml_rows = []
    for ri, row in enumerate(rows, start=1):
        cells = []
        for ci, value in enumerate(row):
            ref = f"{_col(ci)}{ri}"
            if isinstance(value, int | float):
                cells.append(f'<c r="{ref}"><v>{value}</v></c>')
            else:
                cells.append(f'<c r="{ref}" t="inlineStr"><is><t>{escape(value)}</t></is></c>')
        xml_rows.append(f'<row r="{ri}">{"".join(cells)}</row>')
    return _zip({
        "[Content_Types].xml": _XML + (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            "</Types>"),
        "_rels/.rels": _XML + (
            f'<Relationships xmlns="{_PKG_RELS}">'
            f'<Relationship Id="rId1" Type="{_DOC_REL}" Target="xl/workbook.xml"/>'
            "</Relationships>"),
        "xl/workbook.xml": _XML + (
            f'<workbook xmlns="{x}" xmlns:r="{r_ns}"><sheets>'
            f'<sheet name="{escape(sheet[:31])}" sheetId="1" r:id="rId1"/>'
            "</sheets></workbook>"),
        "xl/_rels/workbook.xml.rels": _XML + (
            f'<Relationships xmlns="{_PKG_RELS}">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
            '2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
            "</Relationships>"),
        "xl/worksheets/sheet1.xml": _XML + (
            f'<worksheet xmlns="{x}"><sheetData>{"".join(xml_rows)}</sheetData></worksheet>'),
    })


# ------------------------------------------------------------------------------------ images

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def make_png(width: int = 48, height: int = 48, rgb: tuple[int, int, int] = (0, 94, 84),
             stripe: tuple[int, int, int] = (255, 255, 255)) -> bytes:
    """A valid RGB PNG: a solid block with a horizontal stripe across the middle."""
    rows = []
    for y in range(height):
        colour = stripe if height // 3 <= y < 2 * height // 3 and y % 4 < 2 else rgb
        rows.append(b"\x00" + bytes(colour) * width)
    return (b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
            + _png_chunk(b"IEND", b""))


def make_gif() -> bytes:
    """The classic 1x1 transparent GIF (a tracking pixel)."""
    return (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
            b"!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
