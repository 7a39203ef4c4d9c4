"""The report: quicklooks per scene and the campaign's QC summary."""
