"""HWPX (한글's OWPML zip) is sniffed by content and parsed in the limited child process; HWP 5
binary documents are refused with how to convert them."""

from __future__ import annotations

import functools
import io
import re
import zipfile

import pytest

from docqa_core.errors import InvalidRequest, UnsupportedMediaType
from indexing.chunking import chunk_text
from indexing.loaders import ParseLimits, PendingUpload, load_file, parse_upload, read_upload
from indexing.loaders import sniff as sniff_bytes
from indexing.loaders.zip_guard import MAX_MEMBERS, check_zip_bomb
from tests.fixtures.files import HwpxBlock, hwpx_section_xml, make_hwpx

HWPX_TYPE = "application/hwp+zip"
RULES: list[HwpxBlock] = [
    "복무 규정",
    "제1조(목적) 이 규정은 직원의 복무에 관한 사항을 정함을 목적으로 한다.",
    "제2조(근무시간) ① 근무시간은 오전 9시부터 오후 6시까지로 한다.",
    "② 점심시간은 낮 12시부터 오후 1시까지로 한다.",
    [[["휴가 종류"], ["일수"]], [["연차휴가"], ["15일", "(1년 이상 근무자)"]]],
]
MORE_RULES: list[HwpxBlock] = ["제3조(출장) 출장은 소속 부서장의 승인을 받아야 한다."]


def hwp5_stand_in() -> bytes:
    """Not a whole HWP 5 file: the OLE magic, a ``FileHeader`` directory entry name and the
    signature its stream starts with, which is what the sniffer looks for."""
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
    directory = "FileHeader".encode("utf-16-le").ljust(128, b"\x00")
    return header + directory + b"HWP Document File".ljust(512, b"\x00")


@functools.cache
def hwpx_bomb() -> bytes:
    """A real HWPX plus a section1.xml of 300 MB of one byte (about 300 KB compressed)."""
    buffer = io.BytesIO(make_hwpx([["x"]]))
    with (
        zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("Contents/section1.xml", "w", force_zip64=True) as member,
    ):
        chunk = b"A" * (1024 * 1024)
        for _ in range(300):
            member.write(chunk)
    return buffer.getvalue()


def test_paragraphs_tables_and_title_are_read_in_order() -> None:
    document = load_file("복무규정.hwpx", HWPX_TYPE, make_hwpx([RULES, MORE_RULES], title="복무"))
    assert document.title == "복무"
    assert document.doc_id == "복무규정.hwpx"
    assert document.text.split("\n\n") == [
        "복무 규정",
        "제1조(목적) 이 규정은 직원의 복무에 관한 사항을 정함을 목적으로 한다.",
        "제2조(근무시간) ① 근무시간은 오전 9시부터 오후 6시까지로 한다.",
        "② 점심시간은 낮 12시부터 오후 1시까지로 한다.",
        "휴가 종류 | 일수\n연차휴가 | 15일 (1년 이상 근무자)",
        "제3조(출장) 출장은 소속 부서장의 승인을 받아야 한다.",
    ]


def test_the_title_falls_back_to_the_file_name() -> None:
    untitled = load_file("규정/출장규정.hwpx", "application/octet-stream", make_hwpx([RULES]))
    empty = load_file("출장규정.hwpx", HWPX_TYPE, make_hwpx([RULES], title="  "))
    assert untitled.title == empty.title == "출장규정"


def test_sections_are_read_in_number_order_not_name_order() -> None:
    sections: list[list[HwpxBlock]] = [[f"제{i + 1}조(조항) 본문 {i}."] for i in range(11)]
    document = load_file("a.hwpx", HWPX_TYPE, make_hwpx(sections))
    assert [line[:5] for line in document.text.split("\n\n")][9:] == ["제10조(", "제11조("]


def test_the_law_chunker_sees_each_article() -> None:
    document = load_file("rules.hwpx", HWPX_TYPE, make_hwpx([RULES, MORE_RULES]))
    chunks = chunk_text(document.text, kind=document.kind, count_tokens=len)
    sections = [chunk.section for chunk in chunks]
    assert any(s.startswith("제1조(목적)") for s in sections), sections
    assert any(s.startswith("제2조(근무시간)") for s in sections), sections
    assert any(s.startswith("제3조(출장)") for s in sections), sections


@pytest.mark.parametrize("filename", ["rules.hwpx", "rules.hwp", "rules.bin.hwpx"])
def test_hwpx_is_known_by_its_content(filename: str) -> None:
    data = make_hwpx([RULES])
    assert sniff_bytes(data) == "hwpx"
    pending = read_upload(filename, "application/octet-stream", data)
    assert isinstance(pending, PendingUpload) and pending.fmt == "hwpx"


def test_a_zip_without_the_hwpx_mimetype_is_not_hwpx() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", b"application/epub+zip")
        archive.writestr("Contents/section0.xml", hwpx_section_xml(["제1조 본문"]))
    with pytest.raises(UnsupportedMediaType, match="zip archive that is not a Word or Hangul"):
        read_upload("fake.hwpx", HWPX_TYPE, buffer.getvalue())


def test_hwpx_under_a_word_name_is_415() -> None:
    with pytest.raises(UnsupportedMediaType, match=r"content is a Hangul \(HWPX\) document"):
        read_upload("rules.docx", "application/octet-stream", make_hwpx([RULES]))


@pytest.mark.parametrize("filename", ["rules.hwp", "rules.hwpx", "rules.docx", "rules.txt"])
def test_hwp5_binary_is_415_with_how_to_convert(filename: str) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        read_upload(filename, "application/octet-stream", hwp5_stand_in())
    assert caught.value.http_status == 415
    assert caught.value.message == (
        f"{filename}: HWP 5 binary documents are not supported; save the file as HWPX "
        "(한글: 다른 이름으로 저장 → HWPX) and upload that"
    )


def test_other_ole_files_are_still_plain_binary() -> None:
    legacy_doc = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "WordDocument".encode("utf-16-le") * 40
    assert sniff_bytes(legacy_doc) == "binary"


async def test_hwpx_parses_in_the_child() -> None:
    pending = read_upload("rules.hwpx", HWPX_TYPE, make_hwpx([RULES], title="복무"))
    assert isinstance(pending, PendingUpload)
    [document] = await parse_upload(pending, ParseLimits())
    assert document.title == "복무" and document.text.startswith("복무 규정\n\n제1조(목적)")


async def test_an_hwpx_zip_bomb_fails_in_the_child_with_a_clear_error() -> None:
    bomb = hwpx_bomb()
    assert len(bomb) < 2 * 1024 * 1024
    pending = read_upload("bomb.hwpx", HWPX_TYPE, bomb)
    assert isinstance(pending, PendingUpload)
    with pytest.raises(InvalidRequest, match=r"^bomb\.hwpx: .*zip bomb"):
        await parse_upload(pending, ParseLimits())


def test_an_hwpx_of_too_many_members_is_refused() -> None:
    extra = {f"BinData/image{i}.png": b"" for i in range(MAX_MEMBERS)}
    with pytest.raises(InvalidRequest, match=r"holds \d+ files .*zip bomb"):
        check_zip_bomb(make_hwpx([RULES], extra=extra), max_uncompressed_bytes=10**9, max_ratio=100)


def with_reference(section: bytes, entity: str) -> bytes:
    """The section with one more paragraph whose text is a reference to ``entity``."""
    paragraph = f"<hp:p><hp:run><hp:t>&{entity};</hp:t></hp:run></hp:p></hs:sec>"
    return section.replace(b"</hs:sec>", paragraph.encode())


BILLION_LAUGHS = (
    '<!DOCTYPE hs:sec [<!ENTITY a "ㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋ">'
    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
)


@pytest.mark.parametrize("member", ["Contents/section0.xml", "Contents/content.hpf"])
def test_a_doctype_or_entity_declaration_is_refused(member: str) -> None:
    hostile = with_reference(hwpx_section_xml(["본문"], prolog=BILLION_LAUGHS), "c")
    data = make_hwpx([["제1조 본문"]], title="t", extra={member: hostile})
    with pytest.raises(InvalidRequest, match=f"{re.escape(member)} declares a DOCTYPE"):
        load_file("laughs.hwpx", HWPX_TYPE, data)


def test_an_undeclared_entity_is_not_well_formed() -> None:
    section = with_reference(hwpx_section_xml(["본문"]), "xxe")  # no DOCTYPE declares it
    data = make_hwpx([], extra={"Contents/section0.xml": section})
    with pytest.raises(InvalidRequest, match=r"section0\.xml is not well-formed XML"):
        load_file("xxe.hwpx", HWPX_TYPE, data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (make_hwpx([RULES])[:300], "archive could not be read"),  # the zip guard says so
        (make_hwpx([], title="빈 문서"), "has no Contents/section"),
        (make_hwpx([["", "  "]]), "holds no text"),
        (make_hwpx([], extra={"Contents/section0.xml": b"<hs:sec><hp:p>"}), "not well-formed"),
    ],
    ids=["truncated", "no-sections", "no-text", "broken-xml"],
)
async def test_a_corrupt_hwpx_fails_only_itself(data: bytes, message: str) -> None:
    broken = read_upload("broken.hwpx", HWPX_TYPE, data)
    good = read_upload("good.hwpx", HWPX_TYPE, make_hwpx([RULES]))
    assert isinstance(broken, PendingUpload) and isinstance(good, PendingUpload)
    with pytest.raises(InvalidRequest, match=rf"^broken\.hwpx: .*{message}"):
        await parse_upload(broken, ParseLimits())
    [document] = await parse_upload(good, ParseLimits())
    assert "제2조(근무시간)" in document.text


def test_text_around_a_table_and_a_nested_table_keep_their_order() -> None:
    def run(text: str) -> str:
        return f"<hp:run><hp:t>{text}</hp:t></hp:run>"

    def table(*cells: str) -> str:
        tcs = "".join(f"<hp:tc><hp:subList><hp:p>{c}</hp:p></hp:subList></hp:tc>" for c in cells)
        return f"<hp:run><hp:tbl><hp:tr>{tcs}</hp:tr></hp:tbl></hp:run>"

    inner = table(run("내부1"), run("내부2"))
    paragraph = (
        f"<hp:p>{run('[별표 1]')}{table(run('기준'), run('금액') + inner)}{run('끝.')}</hp:p>"
    )
    section = hwpx_section_xml(["제1조 본문"]).replace(
        b"</hs:sec>", f"{paragraph}</hs:sec>".encode()
    )
    data = make_hwpx([], extra={"Contents/section0.xml": section})
    text = load_file("t.hwpx", HWPX_TYPE, data).text
    assert text.split("\n\n") == ["제1조 본문", "[별표 1]", "기준 | 금액 내부1 | 내부2", "끝."]
