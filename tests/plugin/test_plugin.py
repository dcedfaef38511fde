"""certkit.plugin (the entry point pytest loads in every run where certkit is installed): light to load."""

import subprocess
import sys


def test_loading_the_plugin_imports_no_numeric_or_model_library():
    """Every pytest run of a project with certkit installed loads the plugin: it must not pay for numpy, scipy, torch,
    transformers or jinja2 (each is imported by the part of certkit that needs it, on first use)."""
    code = ("import sys, certkit.plugin; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'scipy', 'torch', 'transformers', 'jinja2', 'PIL'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
