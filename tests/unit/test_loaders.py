"""Unit tests for indexing.loaders: every upload format, encodings, and clear errors."""

from __future__ import annotations

import json

import pytest

from docqa_core.errors import InvalidRequest, UnsupportedMediaType
from indexing.chunking import chunk_text
from indexing.loaders import decode_text, load_documents, load_file
from tests.fixtures.files import FILES, encrypt_pdf, make_docx, make_pdf

KOREAN = "제1조(목적) 이 규정은 도서관 운영에 필요한 사항을 정한다.\n열람실은 밤 10시에 닫는다."
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def words(text: str) -> int:
    return len(text.split())


# ------------------------------------------------------------------------------------------
# Text and encodings
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        KOREAN.encode("utf-8"),
        b"\xef\xbb\xbf" + KOREAN.encode("utf-8"),
        KOREAN.encode("utf-16"),  # with BOM (native order)
        b"\xfe\xff" + KOREAN.encode("utf-16-be"),
        KOREAN.encode("cp949"),
        KOREAN.encode("euc-kr"),
    ],
    ids=["utf8", "utf8-bom", "utf16", "utf16-be", "cp949", "euc-kr"],
)
def test_korean_text_is_decoded_in_every_supported_encoding(data: bytes) -> None:
    document = load_file("규정.txt", "text/plain", data)
    assert document.text == KOREAN
    assert document.title == "제1조(목적) 이 규정은 도서관 운영에 필요한 사항을 정한다."
    assert document.doc_id == "규정.txt"
    assert document.source == "규정.txt"
    assert document.kind == "auto"


def test_declared_charset_is_honoured() -> None:
    data = "Café crème".encode("latin-1")
    assert decode_text(data, "iso-8859-1") == "Café crème"
    assert load_file("menu.txt", "text/plain; charset=ISO-8859-1", data).text == "Café crème"


def test_undecodable_and_binary_text_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="not UTF-8"):
        load_file("bad.txt", "text/plain", b"\xff\xff\xff\xfe\x80")
    with pytest.raises(InvalidRequest, match="NUL"):
        load_file("bad.txt", "text/plain", "abc".encode("utf-16-le"))
    with pytest.raises(InvalidRequest, match="no text"):
        load_file("empty.txt", "text/plain", b"  \n ")


def test_markdown_keeps_markdown_kind_and_doc_id_override() -> None:
    document = load_file("notes.md", "text/markdown", b"# Guide\n\nBody text.", doc_id="custom-id")
    assert document.kind == "markdown"
    assert document.title == "Guide"
    assert document.doc_id == "custom-id"


# ------------------------------------------------------------------------------------------
# Content types
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["", "application/octet-stream", "text/plain"])
def test_generic_or_matching_content_type_is_accepted(content_type: str) -> None:
    assert load_file("a.txt", content_type, b"hello").text == "hello"


def test_mismatched_content_type_or_extension_is_415_naming_supported_types() -> None:
    with pytest.raises(UnsupportedMediaType) as excinfo:
        load_documents("a.pdf", "text/html", make_pdf(["hello"]))
    assert ".pdf" in excinfo.value.message and ".docx" in excinfo.value.message
    with pytest.raises(UnsupportedMediaType):
        load_documents("photo.png", "image/png", b"\x89PNG")
    with pytest.raises(UnsupportedMediaType):
        load_documents("noext", "", b"hello")


# ------------------------------------------------------------------------------------------
# HTML
# ------------------------------------------------------------------------------------------


def test_html_drops_scripts_styles_nav_and_keeps_headings_as_markdown() -> None:
    data = (FILES / "guide.html").read_bytes()
    document = load_file("guide.html", "text/html; charset=utf-8", data)
    assert document.kind == "markdown"
    assert document.title == "도서관 이용 안내"
    text = document.text
    for hidden in ("tracking", "color", "메뉴 링크", "also skipped"):
        assert hidden not in text
    assert "# 도서관 이용 안내\n\n열람실은 평일 오전 9시부터 오후 10시까지 엽니다. 주말에는" in text
    assert "\n\n## 대출\n\n" in text
    assert "다섯 권까지 빌릴 수 있습니다 & 기간은 14일입니다." in text
    assert "- 연장은 한 번만 됩니다.\n\n- 연체하면 하루 100원입니다." in text
    assert "무인 반납함은 정문 옆에 있습니다.\n밤에도 쓸 수 있습니다." in text
    assert "요일 | 시간\n토요일 | 9시-18시" in text
    sections = {c.section for c in chunk_text(text, kind="markdown", count_tokens=words)}
    assert "도서관 이용 안내 > 대출 > 반납" in sections


def test_html_in_euc_kr_declared_by_meta_tag_and_title_from_h1() -> None:
    html = '<html><head><meta charset="euc-kr"></head><body><h1>공지</h1><p>본문입니다.</p>'
    document = load_file("notice.htm", "", html.encode("euc-kr"))
    assert document.title == "공지"
    assert document.text == "# 공지\n\n본문입니다."


def test_html_without_visible_text_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="no visible text"):
        load_file("x.html", "text/html", b"<html><script>x()</script></html>")


# ------------------------------------------------------------------------------------------
# PDF
# ------------------------------------------------------------------------------------------


def test_pdf_pages_are_joined_with_page_starts_and_title_from_metadata() -> None:
    data = make_pdf(
        ["Opening hours\nWe open at nine.", "Loans\nFive books at a time."], title="Rules"
    )
    document = load_file("rules.pdf", "application/pdf", data)
    assert document.title == "Rules"
    assert document.text == "Opening hours\nWe open at nine.\n\nLoans\nFive books at a time."
    assert document.page_starts is not None
    assert document.page_starts == (0, document.text.index("Loans"))
    chunks = chunk_text(document.text, kind="paragraph", count_tokens=words,
                        max_tokens=6, page_starts=document.page_starts)  # fmt: skip
    assert {c.page for c in chunks} == {1, 2}
    assert all(c.page == 2 for c in chunks if "Five" in c.text)


def test_pdf_title_falls_back_to_first_line() -> None:
    document = load_file("x.pdf", "application/octet-stream", make_pdf(["First line\nmore"]))
    assert document.title == "First line"


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog", make_pdf(["hello"])[:-200]],
    ids=["truncated-header", "truncated"],
)
def test_malformed_pdf_is_invalid_request(data: bytes) -> None:
    with pytest.raises(InvalidRequest, match=r"broken\.pdf: .*PDF"):
        load_documents("broken.pdf", "application/pdf", data)


@pytest.mark.parametrize("data", [b"not a pdf at all", b""], ids=["garbage", "empty"])
def test_a_pdf_name_on_other_content_is_415(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType, match=r"broken\.pdf: the content is text, not a PDF"):
        load_documents("broken.pdf", "application/pdf", data)


def test_encrypted_pdf_is_invalid_request() -> None:
    data = encrypt_pdf(make_pdf(["secret text"]))
    with pytest.raises(InvalidRequest, match="encrypted"):
        load_documents("locked.pdf", "application/pdf", data)


def test_pdf_without_text_is_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="no extractable text"):
        load_documents("scan.pdf", "application/pdf", make_pdf([""]))


# ------------------------------------------------------------------------------------------
# DOCX
# ------------------------------------------------------------------------------------------


def test_docx_headings_become_markdown_section_path() -> None:
    data = make_docx(
        [
            ("h1", "이용 규칙"),
            ("p", "도서관 이용 규칙을 정한다."),
            ("h2", "대출"),
            ("p", "다섯 권까지 빌릴 수 있다."),
            ("h3", "연장"),
            ("p", "연장은 한 번 할 수 있다."),
        ],
        table=[["요일", "시간"], ["토요일", "9시-18시"]],
    )
    document = load_file("rules.docx", DOCX_TYPE, data)
    assert document.kind == "markdown"
    assert document.title == "이용 규칙"
    assert document.text.startswith("# 이용 규칙\n\n도서관 이용 규칙을 정한다.\n\n## 대출\n\n")
    assert "### 연장\n\n연장은 한 번 할 수 있다." in document.text
    assert document.text.endswith("요일 | 시간\n토요일 | 9시-18시")
    chunks = chunk_text(document.text, kind=document.kind, count_tokens=words)
    [extension] = [c for c in chunks if "연장은 한 번 할 수 있다." in c.text]
    assert extension.section == "이용 규칙 > 대출 > 연장"


def test_docx_without_headings_and_core_title() -> None:
    data = make_docx([("p", "Just a paragraph."), ("p", "Another one.")], title="Memo")
    document = load_file("memo.docx", "application/octet-stream", data)
    assert document.kind == "auto"
    assert document.title == "Memo"
    assert document.text == "Just a paragraph.\n\nAnother one."


def test_malformed_docx_is_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="DOCX could not be read"):
        load_documents("broken.docx", DOCX_TYPE, b"PK\x03\x04 not really a zip")


# ------------------------------------------------------------------------------------------
# JSON and JSONL
# ------------------------------------------------------------------------------------------

RECORDS = [
    {"doc_id": "a", "text": "첫 번째 문서", "title": "A", "metadata": {"lang": "ko"}},
    {"doc_id": "b", "text": "second document", "source": "https://example.org/b"},
]


@pytest.mark.parametrize("payload", [RECORDS, {"documents": RECORDS}], ids=["list", "wrapped"])
def test_json_records_become_documents(payload: object) -> None:
    data = json.dumps(payload, ensure_ascii=False).encode()
    documents = load_documents("batch.json", "application/json", data)
    assert [d.doc_id for d in documents] == ["a", "b"]
    assert documents[0].metadata == {"lang": "ko"}
    assert documents[0].title == "A"
    assert documents[0].source == "batch.json"
    assert documents[1].source == "https://example.org/b"


def test_jsonl_one_document_per_line_blank_lines_skipped() -> None:
    lines = [json.dumps(r, ensure_ascii=False) for r in RECORDS]
    data = ("\n".join([lines[0], "", lines[1]]) + "\n").encode()
    documents = load_documents("batch.jsonl", "application/x-ndjson", data)
    assert [d.text for d in documents] == ["첫 번째 문서", "second document"]


def test_jsonl_bad_line_names_the_line() -> None:
    data = b'{"doc_id": "a", "text": "ok"}\n{"doc_id": "b", "text": \n'
    with pytest.raises(InvalidRequest, match=r"batch\.jsonl: line 2: not valid JSON"):
        load_documents("batch.jsonl", "", data)
    data = b'{"doc_id": "a", "text": "ok"}\n\n{"doc_id": "b"}\n'
    with pytest.raises(InvalidRequest, match="line 3: text must be a non-empty string"):
        load_documents("batch.jsonl", "", data)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([{"doc_id": "a", "text": "x"}, {"text": "y"}], "record 1: doc_id"),
        ([{"doc_id": "a", "text": "x", "metadata": []}], "record 0: metadata"),
        ([{"doc_id": "a", "text": "x", "kind": "poem"}], "record 0: kind"),
        ([{"doc_id": "a", "text": "x", "extra": 1}], "record 0: unknown fields: extra"),
        ([3], "record 0: a record must be a JSON object"),
        ([], "no records"),
        ("text", "expected a list"),
    ],
)
def test_bad_json_record_is_named(payload: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        load_documents("batch.json", "application/json", json.dumps(payload).encode())


def test_invalid_json_and_load_file_with_many_records() -> None:
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        load_documents("batch.json", "application/json", b"{nope")
    with pytest.raises(InvalidRequest, match="expected one document"):
        load_file("batch.json", "application/json", json.dumps(RECORDS).encode())
