"""Small, valid sample attachments made in code (no downloads, no binary files in the repo):
PDF, .docx, .xlsx, PNG and GIF, for the seeder and for tests that need real documents."""

from gateway.devstack.samples.documents import make_docx, make_gif, make_pdf, make_png, make_xlsx

__all__ = ["make_docx", "make_gif", "make_pdf", "make_png", "make_xlsx"]
