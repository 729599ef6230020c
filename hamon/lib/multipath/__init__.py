"""Path discovery and health, one module per multipath flavour.

``single``: one block/sg device; ``dmmp``: device-mapper multipath (sysfs via pyudev,
path states from sysfs and multipathd); ``hdlm``: Hitachi Dynamic Link Manager
(``dlnkmgr view -path``); ``iscsi_group``: userspace iSCSI URLs grouped by LUN identity.
"""
