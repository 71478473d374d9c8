"""What an installation needs beside the code, shipped in the wheel: the documented example configuration, which
``ticketd init`` renders into a site's config, and the systemd unit. A package of data only: nothing imports it."""
