from nstvideo.cli import app

app(prog_name="nstvideo")
