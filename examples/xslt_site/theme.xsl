<?xml version="1.0" encoding="utf-8"?>
<!-- The tea catalogue's theme: catalogue, tea and error documents to HTML. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="html" encoding="utf-8" doctype-system="about:legacy-compat"/>

  <!-- Given by the XSLT middleware's params (defaults for a browser applying it alone). -->
  <xsl:param name="site" select="'Tea catalogue'"/>
  <xsl:param name="base" select="''"/>
  <xsl:param name="path" select="''"/>
  <xsl:param name="q" select="''"/>

  <xsl:template match="/">
    <html lang="en">
      <head>
        <title><xsl:apply-templates select="*" mode="title"/> · <xsl:value-of select="$site"/></title>
        <style>
          body { font: 16px/1.5 system-ui, sans-serif; max-width: 46em; margin: 2em auto; padding: 0 1em; }
          table { border-collapse: collapse; width: 100%; }
          td, th { padding: .3em .6em; border-bottom: 1px solid #ddd; text-align: left; }
          .price { text-align: right; white-space: nowrap; }
          nav a { margin-right: .8em; }
          footer { margin-top: 2em; color: #777; font-size: .85em; }
        </style>
      </head>
      <body>
        <header>
          <h1><a href="{$base}/"><xsl:value-of select="$site"/></a></h1>
          <form action="{$base}/" method="get">
            <input type="search" name="q" value="{$q}" placeholder="Search teas"/>
            <button>Search</button>
          </form>
          <nav>
            <a href="{$base}/?category=green">green</a>
            <a href="{$base}/?category=black">black</a>
            <a href="{$base}/?category=oolong">oolong</a>
            <a href="{$base}/?category=white">white</a>
            <a href="{$base}/?category=dark">dark</a>
          </nav>
        </header>
        <main><xsl:apply-templates select="*"/></main>
        <footer>XML themed on the server by stack's XSLT middleware · <code><xsl:value-of select="$path"/></code></footer>
      </body>
    </html>
  </xsl:template>

  <xsl:template match="catalogue" mode="title">Catalogue</xsl:template>
  <xsl:template match="page" mode="title"><xsl:value-of select="tea/name"/></xsl:template>
  <xsl:template match="error" mode="title">Not found</xsl:template>

  <xsl:template match="catalogue">
    <h2>
      <xsl:choose>
        <xsl:when test="$q != ''">Teas matching “<xsl:value-of select="$q"/>”</xsl:when>
        <xsl:otherwise>All teas</xsl:otherwise>
      </xsl:choose>
      (<xsl:value-of select="@count"/>)
    </h2>
    <table class="catalogue">
      <tr><th>Tea</th><th>Kind</th><th class="price">Price</th></tr>
      <xsl:for-each select="tea">
        <xsl:sort select="name"/>
        <tr>
          <td><a href="{$base}/tea/{@id}"><xsl:value-of select="name"/></a></td>
          <td><xsl:value-of select="@category"/></td>
          <td class="price"><xsl:value-of select="price"/> €</td>
        </tr>
      </xsl:for-each>
    </table>
  </xsl:template>

  <xsl:template match="page">
    <article class="tea">
      <h2><xsl:value-of select="tea/name"/></h2>
      <p><xsl:value-of select="tea/description"/></p>
      <p>A <xsl:value-of select="tea/@category"/> tea, <strong><xsl:value-of select="tea/price"/> €</strong> per 100 g.</p>
    </article>
  </xsl:template>

  <xsl:template match="error">
    <p class="error"><xsl:value-of select="."/></p>
  </xsl:template>
</xsl:stylesheet>
