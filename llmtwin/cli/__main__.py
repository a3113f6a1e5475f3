from llmtwin.cli import app

app()
