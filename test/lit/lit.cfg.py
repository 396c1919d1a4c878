import os
import lit.formats

config.name = "Lathe"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.lathe_obj_root, "test", "lit")
config.excludes = ["lit.cfg.py", "lit.site.cfg.py", "Inputs"]
config.environment["PATH"] = os.pathsep.join(
    [config.lathe_tools_dir, config.llvm_tools_dir, config.environment.get("PATH", os.environ["PATH"])])
config.substitutions.append(("%lathe-opt", os.path.join(config.lathe_tools_dir, "lathe-opt")))
