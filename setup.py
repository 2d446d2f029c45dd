"""Maps the top-level folders passes/, autotune/, backends/ to xchip.passes, xchip.autotune,
xchip.backends (plain top-level names such as `backends` are taken on the package index),
finding their subpackages so that none has to be listed by hand."""

from setuptools import find_packages, setup

MAPPED = {"passes": "xchip.passes", "autotune": "xchip.autotune", "backends": "xchip.backends"}

packages = find_packages(include=["xchip", "xchip.*"])
package_dir = {"xchip": "xchip"}
for folder, name in MAPPED.items():
    package_dir[name] = folder
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=package_dir)
