"""The browser test: the preview widget in JupyterLab, in headless Chromium."""
