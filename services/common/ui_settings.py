"""Settings of the web page the query service serves at ``/ui`` (``DOCQA_UI_*``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator


class UiSettings(BaseModel):
    indexing_url: str | None = Field(
        None,
        description="the indexing service's URL as the browser reaches it: the page's Documents "
        "tab uploads, lists and deletes there (that service must list the page's origin in "
        "DOCQA_CORS_ORIGINS); none: the Documents tab is off",
    )

    @field_validator("indexing_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                "DOCQA_UI_INDEXING_URL must be a URL starting with http:// or https:// and "
                f"naming a host, got {value!r}"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"DOCQA_UI_INDEXING_URL takes no query or fragment, got {value!r}")
        return value.strip().rstrip("/")

    @property
    def indexing_origin(self) -> str | None:
        """The origin the page's Content-Security-Policy lets it connect to, besides its own."""
        if self.indexing_url is None:
            return None
        parts = urlsplit(self.indexing_url)
        return f"{parts.scheme}://{parts.netloc}"
