# Install hamon where Pacemaker, man and Python find it; uninstall it again.
#
#   make install            agents, man pages, the hamon command and the package
#   make uninstall
#   make install-dev        the same agents, but importing hamon from this checkout
#                           (what the cluster tier and a developer use)
#   make docs               regenerate metadata/, man/ and docs/messages.md from the agents
#                           (tools/gen-docs; `make docs-check` only compares)
#
# The agents run with Debian's /usr/bin/python3 (fencing.py and ocf.py are installed for
# it). They find the hamon package through @HAMON_PYTHONPATH@, substituted here, the way
# fence-agents substitutes @FENCEAGENTSLIBDIR@.
PYTHON   ?= /usr/bin/python3
DESTDIR  ?=
PREFIX   ?= /usr
SBINDIR  ?= $(PREFIX)/sbin
OCFDIR   ?= /usr/lib/ocf/resource.d/hamon
MANDIR   ?= $(PREFIX)/share/man
LIBDIR   ?= /usr/lib/hamon
SHAREDIR ?= /usr/share/hamon
# Debian's /usr/bin/python3 reads *.pth files here: hamon.pth puts $(LIBDIR) on its path,
# so `python3 -m hamon` and administrators' own scripts import the installed package too.
PTHDIR   ?= /usr/lib/python3/dist-packages
CHECKOUT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))

AGENT_FILES = fence_hamon_scsi:$(SBINDIR)/fence_hamon_scsi \
              ocf/hamon_disk:$(OCFDIR)/hamon_disk \
              hamon:$(SBINDIR)/hamon \
              monscsiclr:$(SBINDIR)/monscsiclr
MAN_PAGES   = $(wildcard man/*.[0-9])

.PHONY: install install-dev uninstall test demo lint docs docs-check

install: PYPATH = $(LIBDIR)
install: install-agents
	install -d $(DESTDIR)$(LIBDIR)
	cd $(CHECKOUT) && find hamon -name '*.py' -exec install -D -m 644 {} $(DESTDIR)$(LIBDIR)/{} \;
	install -d $(DESTDIR)$(PTHDIR)
	echo $(LIBDIR) > $(DESTDIR)$(PTHDIR)/hamon.pth
	for m in $(MAN_PAGES); do s=$${m##*.}; install -D -m 644 $$m \
	    $(DESTDIR)$(MANDIR)/man$$s/$$(basename $$m); done

install-dev: PYPATH = $(CHECKOUT)
install-dev: install-agents

install-agents:
	@for pair in $(AGENT_FILES); do src=agents/$${pair%%:*}; dst=$(DESTDIR)$${pair#*:}; \
	    [ -f $(CHECKOUT)/$$src ] || continue; \
	    install -d $$(dirname $$dst); \
	    sed -e 's|@HAMON_PYTHONPATH@|$(PYPATH)|' $(CHECKOUT)/$$src > $$dst.tmp && \
	    chmod 755 $$dst.tmp && mv $$dst.tmp $$dst && echo "installed $$dst"; done
	@if [ -f $(CHECKOUT)/agents/fence_hamon_scsi_check ]; then \
	    install -d $(DESTDIR)$(SHAREDIR); \
	    sed -e 's|@HAMON_PYTHONPATH@|$(PYPATH)|' $(CHECKOUT)/agents/fence_hamon_scsi_check \
	        > $(DESTDIR)$(SHAREDIR)/fence_hamon_scsi_check; \
	    chmod 755 $(DESTDIR)$(SHAREDIR)/fence_hamon_scsi_check; fi

uninstall:
	for pair in $(AGENT_FILES); do rm -f $(DESTDIR)$${pair#*:}; done
	rm -rf $(DESTDIR)$(LIBDIR) $(DESTDIR)$(SHAREDIR)
	rm -f $(DESTDIR)$(PTHDIR)/hamon.pth
	-rmdir $(DESTDIR)$(OCFDIR) 2>/dev/null
	for m in $(MAN_PAGES); do s=$${m##*.}; rm -f $(DESTDIR)$(MANDIR)/man$$s/$$(basename $$m); done

test:
	./run-tests

demo:
	./demo/run

lint:
	.venv/bin/ruff check .

docs:
	$(PYTHON) tools/gen-docs

docs-check:
	$(PYTHON) tools/gen-docs --check
